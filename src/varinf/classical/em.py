"""Expectation-maximisation (EM) for the Gaussian mixture, in the Neal-Hinton view.

Goodfellow, Bengio & Courville 2016 §19.2 (Deep Learning, ch. 19; Neal & Hinton, 1999): EM is
coordinate ascent on the evidence lower bound

    L(v, theta, q) = E_{h~q}[log p(h, v; theta)] + H(q)                   (19.7)
                   = log p(v; theta) - KL(q(h|v) || p(h|v; theta))        (19.1)

* E-step: q(h^(i)) = p(h^(i) | v^(i); theta)   (19.8 context) - the KL in (19.1)
  becomes zero, so after the E-step the bound *equals* the log-likelihood;
* M-step: maximise sum_i L(v^(i), theta, q) over theta in closed form; for a
  Gaussian mixture it reads only the expected sufficient statistics of q
  (counts, first and second moments).

Both steps can only raise L, so the bound never drops; ``bound_trace_`` records
it after every half-step. ``lower_bounds_`` holds it after each E-step - the
log-likelihood per sample, the quantity scikit-learn's ``GaussianMixture``
reports and whose change it compares with ``tol``.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.base import DensityMixin
from sklearn.utils import check_random_state

from varinf.errors import ConfigError, DataError

from . import _gaussian as G
from ._base import CoordinateAscent, _check_int, _check_real, check_data

__all__ = ["GaussianMixture", "gmm_lower_bound_terms"]



def gmm_lower_bound_terms(nk, s1, s2, entropy, weights, means_c, precisions, logdet_prec, covariance_type):
    """Neal-Hinton bound L(q, theta) of a Gaussian mixture from the statistics of q.

    With N_k = sum_n q_nk, and M_k = sum_n q_nk (x_n - mu_k)(x_n - mu_k)^T built
    from the first and second moments of q (``scatter``):

        E_q[log p(z; pi)]           = sum_k N_k log pi_k
        E_q[log p(x | z; mu, Sigma)] = sum_k N_k (log|P_k| - D log 2pi) / 2 - tr(P_k M_k) / 2
        H(q)                         = -sum_nk q_nk log q_nk

    Their sum is Eq. 19.7 of Goodfellow et al. (2016), E_q[log p(h, v)] + H(q), for h = z.
    """
    d = means_c.shape[1]
    m = G.scatter(nk, s1, s2, means_c, covariance_type)
    if covariance_type == "full":
        trace = np.einsum("kij,kji->k", precisions, m)
    else:
        trace = np.einsum("kd,kd->k", precisions, m)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_w = np.where(nk > 0, nk * np.log(weights), 0.0)
    return {
        # Eq. 19.7, first term, prior part: E_q[log p(z)] = sum_k N_k log pi_k
        "E_q[log p(z)]": float(log_w.sum()),
        # Eq. 19.7, first term, likelihood part: E_q[log N(x | mu_z, Sigma_z)]
        "E_q[log p(x|z)]": float(0.5 * (nk * (logdet_prec - d * G.LOG_2PI)).sum() - 0.5 * trace.sum()),
        # Eq. 19.7, second term: entropy of q(z | x)
        "H[q(z)]": float(entropy),
    }


class GaussianMixture(DensityMixin, CoordinateAscent):
    """Gaussian mixture fitted by EM (exact E-step, closed-form M-step).

    Same hyper-parameters, attributes and defaults as ``sklearn.mixture.GaussianMixture``
    for the covariance types implemented here ("full" and "diag"); given the same
    initial parameters (``weights_init``/``means_init``/``precisions_init``, or the
    same ``random_state`` and ``init_params``) it follows the same iterates. The methods
    scikit-learn users call (``score_samples``, ``score``, ``predict``, ``predict_proba``,
    ``fit_predict``, ``sample``, ``aic``, ``bic``) return scikit-learn's values on the same
    fitted parameters. Not implemented: ``n_init``, ``warm_start`` and the "tied" and
    "spherical" covariance types.

    Parameters
    ----------
    n_components : int
    covariance_type : {"full", "diag"}
    tol : float
        Convergence threshold on the change of the per-sample log-likelihood
        (scikit-learn's semantics).
    reg_covar : float
        Added to the diagonal of every covariance in the M-step.
    max_iter : int
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}
        How initial responsibilities are drawn (as in scikit-learn).
    weights_init, means_init, precisions_init : array-like or None
        Initial parameters; each one given overrides the one derived from the
        initial responsibilities (and when all three are given none are drawn).
    random_state : int, RandomState or None
    verbose : int

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_ :
        Fitted parameters (scikit-learn shapes).
    lower_bound_ : float
        Per-sample log-likelihood at the last E-step (= the bound, Eq. 19.1 with KL = 0).
    lower_bounds_, bound_trace_, bound_terms_, n_iter_, converged_ : see CoordinateAscent.
    """

    _tol_mode = "mean"
    _monitor = "E"

    def __init__(self, n_components: int = 1, *, covariance_type: str = "full", tol: float = 1e-3,
                 reg_covar: float = 1e-6, max_iter: int = 100, init_params: str = "kmeans",
                 weights_init=None, means_init=None, precisions_init=None, random_state=None,
                 verbose: int = 0):
        super().__init__(tol=tol, max_iter=max_iter, random_state=random_state, verbose=verbose)
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init

    # ------------------------------------------------------------ validation
    def _min_samples(self) -> int:
        return _check_int(self.n_components, "n_components", 1)

    def _check_params(self, X: np.ndarray) -> None:
        k, d = self.n_components, X.shape[1]
        if self.covariance_type not in ("full", "diag"):
            raise ConfigError(f"covariance_type must be 'full' or 'diag'; got {self.covariance_type!r}.")
        if self.init_params not in G.INIT_PARAMS:
            raise ConfigError(f"init_params must be one of {G.INIT_PARAMS}; got {self.init_params!r}.")
        _check_real(self.reg_covar, "reg_covar", 0.0)
        self._weights0 = self._means0 = self._prec0 = None
        if self.weights_init is not None:
            w = np.asarray(self.weights_init, dtype=np.float64)
            if w.shape != (k,) or np.any(w < 0) or not np.isclose(w.sum(), 1.0):
                raise DataError(f"weights_init must be ({k},), non-negative, summing to 1; got shape {w.shape}.")
            self._weights0 = w
        if self.means_init is not None:
            self._means0 = check_data(self.means_init, name="means_init")
            if self._means0.shape != (k, d):
                raise DataError(f"means_init must have shape ({k}, {d}); got {self._means0.shape}.")
        if self.precisions_init is not None:
            p = np.asarray(self.precisions_init, dtype=np.float64)
            shape = (k, d, d) if self.covariance_type == "full" else (k, d)
            if p.shape != shape:
                raise DataError(f"precisions_init must have shape {shape}; got {p.shape}.")
            if self.covariance_type == "full" and not np.allclose(p, p.transpose(0, 2, 1)):
                raise DataError("precisions_init must be symmetric.")
            G.logdet_precisions(p, self.covariance_type)  # raises unless positive definite
            self._prec0 = p

    # ------------------------------------------------------------ coordinate ascent
    def _prepare(self, X):
        return G.QuadraticFeatures(X, self.covariance_type, n_components=self.n_components)

    def _initialize(self, feats: G.QuadraticFeatures, random_state) -> None:
        self._shift = feats.shift
        if self._weights0 is None or self._means0 is None or self._prec0 is None:
            resp = G.initial_responsibilities(feats.X, self.n_components, self.init_params, random_state)
            nk, s1, s2 = feats.unpack(G.statistics_of(feats, resp))
            weights, means_c, cov = self._estimate_parameters(nk, s1, s2)
            if self._weights0 is None:  # scikit-learn divides the counts by n (no renormalisation)
                weights = (nk + 10 * np.finfo(float).eps) / feats.n_samples
            self.covariances_ = cov
            prec, logdet = G.precisions_from_covariances(cov, self.covariance_type)
        else:
            weights = means_c = prec = logdet = None
        self._weights = self._weights0.copy() if self._weights0 is not None else weights
        self._means_c = self._means0 - self._shift if self._means0 is not None else means_c
        if self._prec0 is not None:
            self._prec = self._prec0.copy()
            self._logdet = G.logdet_precisions(self._prec, self.covariance_type)
        else:
            self._prec, self._logdet = prec, logdet

    def _blocks(self):
        return [("E", self._e_step), ("M", self._m_step)]

    def _e_step(self, feats: G.QuadraticFeatures) -> None:
        """q(z_n = k) = p(z_n = k | x_n; theta): the exact posterior (Goodfellow et al. 2016 §19.2, E-step)."""
        C = feats.coefficients(self._means_c, self._prec, self._log_weighted_norm(feats.n_features))
        self._loglik, self._entropy, stats = G.responsibility_pass(feats, C)
        self._nk, self._s1, self._s2 = feats.unpack(stats)

    def _m_step(self, feats: G.QuadraticFeatures) -> None:
        """theta = argmax_theta E_q[log p(x, z; theta)] in closed form (Goodfellow et al. 2016 §19.2, M-step)."""
        self._weights, self._means_c, self.covariances_ = self._estimate_parameters(self._nk, self._s1, self._s2)
        self._prec, self._logdet = G.precisions_from_covariances(self.covariances_, self.covariance_type)

    def _estimate_parameters(self, nk, s1, s2):
        """Weighted maximum likelihood: pi_k = N_k/N, mu_k = mean, Sigma_k = scatter/N_k + reg*I."""
        nk_reg = nk + 10 * np.finfo(float).eps  # as scikit-learn, keeps empty components finite
        weights = nk_reg / nk_reg.sum()
        means_c = s1 / nk_reg[:, None]
        m = G.scatter(nk, s1, s2, means_c, self.covariance_type)
        if self.covariance_type == "full":
            cov = m / nk_reg[:, None, None]
            idx = np.arange(cov.shape[1])
            cov[:, idx, idx] += self.reg_covar
        else:
            cov = m / nk_reg[:, None] + self.reg_covar
        return weights, means_c, cov

    def _log_weighted_norm(self, d: int) -> np.ndarray:
        # a zero weight gets log(tiny) ~ -708 rather than -inf, which would turn 0 * log 0 into NaN
        return np.log(np.maximum(self._weights, np.finfo(float).tiny)) + 0.5 * (self._logdet - d * G.LOG_2PI)

    def _bound_terms(self, feats) -> dict[str, float]:
        return gmm_lower_bound_terms(self._nk, self._s1, self._s2, self._entropy, self._weights,
                                     self._means_c, self._prec, self._logdet, self.covariance_type)

    def _finalize(self, feats) -> None:
        self.weights_ = self._weights
        self.means_ = self._means_c + self._shift
        self.precisions_ = self._prec
        self.precisions_cholesky_ = G.precisions_cholesky(self._prec, self.covariance_type)

    # ------------------------------------------------------------ inference on new data
    def _weighted_log_prob(self, X) -> np.ndarray:
        X = self._validate(X)
        feats = G.QuadraticFeatures(X, self.covariance_type, n_components=self.n_components, shift=self._shift)
        logdet = G.logdet_precisions(self.precisions_, self.covariance_type)
        bias = np.log(np.maximum(self.weights_, np.finfo(float).tiny)) + 0.5 * (logdet - X.shape[1] * G.LOG_2PI)
        C = feats.coefficients(self.means_ - self._shift, self.precisions_, bias)
        return G.log_prob_matrix(feats, C)

    def score_samples(self, X) -> np.ndarray:
        """log p(x_n; theta) for each row."""
        return G.logsumexp_rows(self._weighted_log_prob(X))

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per sample."""
        return float(self.score_samples(X).mean())

    def predict_proba(self, X) -> np.ndarray:
        """Posterior responsibilities p(z_n = k | x_n; theta) (the exact E-step)."""
        A = self._weighted_log_prob(X)
        A -= G.logsumexp_rows(A)[:, None]
        return np.exp(A)

    def predict(self, X) -> np.ndarray:
        """The most probable component of each row, argmax_k p(z_n = k | x_n; theta)."""
        return self._weighted_log_prob(X).argmax(axis=1)

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Fit on ``X``, then label its rows: ``fit(X).predict(X)`` (scikit-learn's guarantee)."""
        return self.fit(X).predict(X)

    def _n_parameters(self) -> int:
        """Free parameters: K-1 weights, K D means, K D(D+1)/2 (full) or K D (diag) covariance entries."""
        k, d = self.means_.shape
        cov_params = k * d * (d + 1) // 2 if self.covariance_type == "full" else k * d
        return int(cov_params + k * d + k - 1)

    def bic(self, X) -> float:
        """Bayesian information criterion -2 log p(X; theta) + p log N (lower is better; scikit-learn's)."""
        X = self._validate(X)
        return -2 * self.score(X) * X.shape[0] + self._n_parameters() * math.log(X.shape[0])

    def aic(self, X) -> float:
        """Akaike information criterion -2 log p(X; theta) + 2 p (lower is better; scikit-learn's)."""
        X = self._validate(X)
        return -2 * self.score(X) * X.shape[0] + 2 * self._n_parameters()

    def sample(self, n_samples: int = 1):
        """Draw ``n_samples`` points and their component labels, as scikit-learn does.

        The draws come from the estimator's ``random_state`` (an integer gives the same draws at
        every call), in scikit-learn's order: component counts from one multinomial draw, then each
        component's points (``RandomState.multivariate_normal`` for "full", scaled standard normals
        for "diag"); the labels are sorted. Same fitted parameters and ``random_state`` give
        scikit-learn's points exactly.
        """
        self._check_fitted()
        n_samples = _check_int(n_samples, "n_samples", 1)
        rng = check_random_state(self.random_state)
        counts = rng.multinomial(n_samples, self.weights_)
        if self.covariance_type == "full":
            X = np.vstack([rng.multivariate_normal(mean, cov, int(c))
                           for mean, cov, c in zip(self.means_, self.covariances_, counts)])
        else:
            X = np.vstack([mean + rng.standard_normal(size=(int(c), self.n_features_in_)) * np.sqrt(var)
                           for mean, var, c in zip(self.means_, self.covariances_, counts)])
        labels = np.repeat(np.arange(self.n_components), counts)
        return X, labels
