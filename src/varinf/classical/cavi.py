"""Mean-field coordinate ascent variational inference (CAVI).

Patlan §II (mean-field VI) and Eikema & Aziz 2020 (mean-field slides); Blei, Kucukelbir &
McAuliffe (2017), Algorithm 1. Under the mean-field family
q(Z) = prod_j q_j(Z_j), the ELBO

    L(q) = E_q[log p(X, Z)] - E_q[log q(Z)]                              (Patlan §I.B)

is maximised over one factor at a time by

    q_j*(Z_j)  propto  exp E_{-j}[log p(X, Z)]                            (Patlan §II)

(the log of the optimal factor is the expected log joint over all the *other*
factors). [`MeanFieldCAVI`][varinf.classical.cavi.MeanFieldCAVI] is that loop: a model names its factors and
implements the update of each and the labelled terms of its ELBO; the shared
[`CoordinateAscent`][varinf.classical._base.CoordinateAscent] loop sweeps the factors until
the ELBO stops rising.

[`BayesianGaussianMixture`][varinf.classical.cavi.BayesianGaussianMixture] plugs the Bayesian Gaussian mixture (Bishop 2006,
§10.2; Blei et al. 2017, §3) into it: Dirichlet prior on the weights,
Gaussian-Wishart prior on each component's mean and precision, factors
q(Z) q(pi) prod_k q(mu_k, Lambda_k).
"""

from __future__ import annotations

import functools
import math
from abc import abstractmethod
from collections.abc import Sequence

import numpy as np
from scipy.special import digamma, gammaln
from sklearn.base import DensityMixin

from varinf.errors import ConfigError, DataError

from . import _gaussian as G
from ._base import CoordinateAscent, _check_int, _check_real, check_data

__all__ = [
    "MeanFieldCAVI",
    "BayesianGaussianMixture",
    "UnivariateGaussianCAVI",
    "log_wishart_normalizer",
    "log_dirichlet_normalizer",
    "expected_log_det_wishart",
]


class MeanFieldCAVI(CoordinateAscent):
    """Generic CAVI: sweep q_j <- exp E_{-j}[log p(X, Z)] / const over the factors.

    Subclasses implement

    * ``_factors()``: factor names in sweep order;
    * ``_update_factor(name, data)``: set factor ``name`` to its optimal form
      q_j propto exp E_{-j}[log p(X, Z)] given the others (Patlan §II);
    * ``_bound_terms(data)``: the labelled ELBO terms E_q[log p(.)] and -E_q[log q(.)].

    ``bound_trace_`` then holds the ELBO after every factor update; each update
    maximises the ELBO over its factor exactly, so the trace never decreases.
    ``tol`` is compared with the change of the total ELBO (scikit-learn's
    ``BayesianGaussianMixture`` semantics).
    """

    _tol_mode = "sum"

    @abstractmethod
    def _factors(self) -> Sequence[str]:
        """Names of the mean-field factors, in update order."""

    @abstractmethod
    def _update_factor(self, name: str, data) -> None:
        """q_name <- argmax_q L = exp E_{-name}[log p(X, Z)] / const."""

    def _blocks(self):
        return [(name, functools.partial(self._update_factor, name)) for name in self._factors()]


# --------------------------------------------------------------------------- special functions
def log_dirichlet_normalizer(alpha: np.ndarray) -> float:
    """ln C(alpha) = ln Gamma(sum_k alpha_k) - sum_k ln Gamma(alpha_k)   (Bishop B.23)."""
    return float(gammaln(alpha.sum()) - gammaln(alpha).sum())


def log_wishart_normalizer(logdet_W: np.ndarray, nu: np.ndarray, d: int) -> np.ndarray:
    """ln B(W, nu) = -nu/2 ln|W| - nu D/2 ln 2 - D(D-1)/4 ln pi - sum_i ln Gamma((nu+1-i)/2)   (Bishop B.79)."""
    i = np.arange(1, d + 1)
    return (-0.5 * nu * logdet_W - 0.5 * nu * d * math.log(2.0) - 0.25 * d * (d - 1) * math.log(math.pi)
            - gammaln(0.5 * (np.asarray(nu)[..., None] + 1 - i)).sum(axis=-1))


def expected_log_det_wishart(logdet_W: np.ndarray, nu: np.ndarray, d: int) -> np.ndarray:
    """E[ln|Lambda|] = sum_i psi((nu+1-i)/2) + D ln 2 + ln|W|   (Bishop 10.65)."""
    i = np.arange(1, d + 1)
    return digamma(0.5 * (np.asarray(nu)[..., None] + 1 - i)).sum(axis=-1) + d * math.log(2.0) + logdet_W


# --------------------------------------------------------------------------- Bayesian GMM
class BayesianGaussianMixture(DensityMixin, MeanFieldCAVI):
    """Variational Bayesian Gaussian mixture fitted by CAVI (Bishop 2006 §10.2).

    Model (Bishop 10.37-10.40): pi ~ Dir(alpha_0 1), Lambda_k ~ W(W_0, nu_0),
    mu_k | Lambda_k ~ N(m_0, (beta_0 Lambda_k)^-1), z_n | pi ~ Cat(pi),
    x_n | z_n = k ~ N(mu_k, Lambda_k^-1). Mean field q(Z) q(pi) prod_k q(mu_k, Lambda_k).

    Priors, names and defaults follow scikit-learn's ``BayesianGaussianMixture`` with
    ``weight_concentration_prior_type="dirichlet_distribution"`` and
    ``covariance_type="full"``: ``weight_concentration_prior`` alpha_0 = 1/K,
    ``mean_precision_prior`` beta_0 = 1, ``mean_prior`` m_0 = mean of X,
    ``degrees_of_freedom_prior`` nu_0 = D, ``covariance_prior`` W_0^{-1} = cov(X).
    Like scikit-learn, the q(mu, Lambda) update adds ``reg_covar`` to the weighted
    covariance S_k (W_k^{-1} gains reg_covar N_k I) and uses N_k + 10 eps; with
    ``reg_covar=0`` every update is the exact coordinate maximiser.

    ``lower_bound_`` is the *full* ELBO in nats (all normalising constants kept;
    terms in ``bound_terms_``), and ``tol`` applies to its total change, as in
    scikit-learn. scikit-learn's ``lower_bound_`` drops constants; the same
    quantity is given as ``sklearn_lower_bound_``. After a q(mu, Lambda) update
    with ``reg_covar=0`` the two differ by the constant

        ELBO - sklearn = ln C(alpha_0 1) + K ln B(W_0, nu_0) + K D/2 ln beta_0
                         - N D/2 ln 2 pi + K D(D-1)/4 ln pi

    (with reg_covar > 0 add sum_k nu_k reg_covar N_k tr(W_k) / 2).

    Attributes (scikit-learn names): ``weight_concentration_`` (alpha_k),
    ``mean_precision_`` (beta_k), ``means_`` (m_k), ``degrees_of_freedom_`` (nu_k),
    ``covariances_`` (W_k^{-1} / nu_k), ``precisions_`` (nu_k W_k),
    ``precisions_cholesky_``, ``weights_`` (E_q[pi]) and the fitted priors
    ``weight_concentration_prior_``, ``mean_precision_prior_``, ``mean_prior_``,
    ``degrees_of_freedom_prior_``, ``covariance_prior_``.
    """

    def __init__(self, n_components: int = 1, *, tol: float = 1e-3, reg_covar: float = 1e-6,
                 max_iter: int = 100, init_params: str = "kmeans", resp_init=None,
                 weight_concentration_prior: float | None = None, mean_precision_prior: float | None = None,
                 mean_prior=None, degrees_of_freedom_prior: float | None = None, covariance_prior=None,
                 random_state=None, verbose: int = 0):
        super().__init__(tol=tol, max_iter=max_iter, random_state=random_state, verbose=verbose)
        self.n_components = n_components
        self.reg_covar = reg_covar
        self.init_params = init_params
        self.resp_init = resp_init
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior

    # ------------------------------------------------------------ validation and priors
    def _min_samples(self) -> int:
        return max(2, _check_int(self.n_components, "n_components", 1))

    def _check_params(self, X: np.ndarray) -> None:
        n, d = X.shape
        k = self.n_components
        if self.init_params not in G.INIT_PARAMS:
            raise ConfigError(f"init_params must be one of {G.INIT_PARAMS}; got {self.init_params!r}.")
        _check_real(self.reg_covar, "reg_covar", 0.0)
        self.weight_concentration_prior_ = (1.0 / k if self.weight_concentration_prior is None else
                                            _check_real(self.weight_concentration_prior,
                                                        "weight_concentration_prior", 0.0, strict=True))
        self.mean_precision_prior_ = (1.0 if self.mean_precision_prior is None else
                                      _check_real(self.mean_precision_prior, "mean_precision_prior", 0.0,
                                                  strict=True))
        if self.mean_prior is None:
            self.mean_prior_ = X.mean(axis=0)
        else:
            self.mean_prior_ = np.asarray(self.mean_prior, dtype=np.float64)
            if self.mean_prior_.shape != (d,):
                raise DataError(f"mean_prior must have shape ({d},); got {self.mean_prior_.shape}.")
        if self.degrees_of_freedom_prior is None:
            self.degrees_of_freedom_prior_ = float(d)
        else:
            self.degrees_of_freedom_prior_ = _check_real(self.degrees_of_freedom_prior,
                                                         "degrees_of_freedom_prior", d - 1.0, strict=True)
        if self.covariance_prior is None:
            self.covariance_prior_ = np.atleast_2d(np.cov(X.T))
        else:
            self.covariance_prior_ = np.asarray(self.covariance_prior, dtype=np.float64)
            if self.covariance_prior_.shape != (d, d):
                raise DataError(f"covariance_prior must have shape ({d}, {d}); got {self.covariance_prior_.shape}.")
        try:
            np.linalg.cholesky(self.covariance_prior_)
        except np.linalg.LinAlgError as exc:
            raise DataError("covariance_prior (or the data covariance) is not positive definite; "
                            "pass covariance_prior or drop constant features.") from exc
        if self.resp_init is not None:
            r = np.asarray(self.resp_init, dtype=np.float64)
            if r.shape != (n, k) or np.any(r < 0) or not np.allclose(r.sum(axis=1), 1.0):
                raise DataError(f"resp_init must be ({n}, {k}) with non-negative rows summing to 1.")
            self._resp0 = r
        else:
            self._resp0 = None

    # ------------------------------------------------------------ CAVI
    def _prepare(self, X):
        return G.QuadraticFeatures(X, "full", n_components=self.n_components)

    def _initialize(self, feats: G.QuadraticFeatures, random_state) -> None:
        d = feats.n_features
        self._shift = feats.shift
        self._m0 = self.mean_prior_ - self._shift
        self._W0inv = self.covariance_prior_
        self._logdet_W0 = -np.linalg.slogdet(self._W0inv)[1]
        resp = self._resp0
        if resp is None:
            resp = G.initial_responsibilities(feats.X, self.n_components, self.init_params, random_state)
        self._nk, self._s1, self._s2 = feats.unpack(G.statistics_of(feats, resp))
        with np.errstate(divide="ignore", invalid="ignore"):
            self._entropy = float(-np.where(resp > 0, resp * np.log(resp), 0.0).sum())
        self._n = feats.n_samples
        self._d = d
        self._update_weights()
        self._update_components()

    def _factors(self):
        return ("q(z)", "q(pi)", "q(mu,Lambda)")

    def _update_factor(self, name: str, feats) -> None:
        if name == "q(z)":
            self._update_assignments(feats)
        elif name == "q(pi)":
            self._update_weights()
        else:
            self._update_components()

    def _update_assignments(self, feats: G.QuadraticFeatures) -> None:
        """q(z_n = k) = r_nk propto rho_nk (Bishop 10.46-10.49, 10.64-10.66):

        ln rho_nk = E[ln pi_k] + E[ln|Lambda_k|]/2 - D/2 ln 2pi
                    - D/(2 beta_k) - nu_k (x_n - m_k)^T W_k (x_n - m_k) / 2
        """
        d = self._d
        bias = self._e_log_pi() + 0.5 * self._e_logdet_lambda() - 0.5 * d * G.LOG_2PI - 0.5 * d / self._beta
        C = feats.coefficients(self._m, self._prec, bias)
        _, self._entropy, stats = G.responsibility_pass(feats, C)
        self._nk, self._s1, self._s2 = feats.unpack(stats)

    def _update_weights(self) -> None:
        """q(pi) = Dir(alpha),  alpha_k = alpha_0 + N_k   (Bishop 10.57-10.58)."""
        self._alpha = self.weight_concentration_prior_ + self._nk_reg()

    def _update_components(self) -> None:
        """q(mu_k, Lambda_k) = N(mu_k | m_k, (beta_k Lambda_k)^-1) W(Lambda_k | W_k, nu_k)   (Bishop 10.59-10.63).

        beta_k = beta_0 + N_k,  m_k = (beta_0 m_0 + N_k xbar_k) / beta_k,  nu_k = nu_0 + N_k,
        W_k^-1 = W_0^-1 + N_k S_k + beta_0 N_k / (beta_0 + N_k) (xbar_k - m_0)(xbar_k - m_0)^T
        (S_k + reg_covar I in place of S_k, as scikit-learn).
        """
        nk = self._nk_reg()
        beta0, nu0 = self.mean_precision_prior_, self.degrees_of_freedom_prior_
        xbar = self._s1 / nk[:, None]
        sk = G.scatter(self._nk, self._s1, self._s2, xbar, "full") / nk[:, None, None]
        idx = np.arange(self._d)
        sk[:, idx, idx] += self.reg_covar
        self._beta = beta0 + nk
        self._m = (beta0 * self._m0 + nk[:, None] * xbar) / self._beta[:, None]
        self._nu = nu0 + nk
        diff = xbar - self._m0
        winv = (self._W0inv + nk[:, None, None] * sk
                + (beta0 * nk / self._beta)[:, None, None] * np.einsum("ki,kj->kij", diff, diff))
        # covariances_ = W_k^-1 / nu_k; precisions_ = nu_k W_k (scikit-learn's normalisation)
        self._cov = winv / self._nu[:, None, None]
        self._prec, logdet_prec = G.precisions_from_covariances(self._cov, "full")
        self._logdet_W = logdet_prec - self._d * np.log(self._nu)

    def _nk_reg(self) -> np.ndarray:
        return self._nk + 10 * np.finfo(float).eps

    def _e_log_pi(self) -> np.ndarray:
        """E[ln pi_k] = psi(alpha_k) - psi(sum_j alpha_j)   (Bishop 10.66)."""
        return digamma(self._alpha) - digamma(self._alpha.sum())

    def _e_logdet_lambda(self) -> np.ndarray:
        return expected_log_det_wishart(self._logdet_W, self._nu, self._d)

    def _bound_terms(self, feats) -> dict[str, float]:
        """The ELBO (Bishop 10.70) as its seven labelled terms, Eqs. 10.71-10.77."""
        d, k = self._d, self.n_components
        alpha0, beta0, nu0 = (self.weight_concentration_prior_, self.mean_precision_prior_,
                              self.degrees_of_freedom_prior_)
        nk, beta, nu, m = self._nk, self._beta, self._nu, self._m
        e_log_pi = self._e_log_pi()
        e_logdet = self._e_logdet_lambda()
        W = self._prec / nu[:, None, None]
        # sum_n r_nk (x_n - m_k)(x_n - m_k)^T = N_k S_k + N_k (xbar_k - m_k)(xbar_k - m_k)^T
        scat = G.scatter(nk, self._s1, self._s2, m, "full")
        dm = m - self._m0
        log_B0 = log_wishart_normalizer(self._logdet_W0, nu0, d)
        log_B = log_wishart_normalizer(self._logdet_W, nu, d)
        entropy_lambda = -log_B - 0.5 * (nu - d - 1) * e_logdet + 0.5 * nu * d  # H[q(Lambda_k)], Bishop B.82
        terms = {
            # Bishop 10.71: E[ln p(X | Z, mu, Lambda)]
            "E[log p(X|Z,mu,Lambda)]": 0.5 * np.sum(nk * (e_logdet - d / beta - d * G.LOG_2PI)
                                                    - nu * np.einsum("kij,kji->k", W, scat)),
            # Bishop 10.72: E[ln p(Z | pi)]
            "E[log p(Z|pi)]": np.sum(nk * e_log_pi),
            # Bishop 10.73: E[ln p(pi)]
            "E[log p(pi)]": log_dirichlet_normalizer(np.full(k, alpha0)) + (alpha0 - 1.0) * e_log_pi.sum(),
            # Bishop 10.74: E[ln p(mu, Lambda)]
            "E[log p(mu,Lambda)]": (0.5 * np.sum(d * math.log(beta0 / (2 * math.pi)) + e_logdet - d * beta0 / beta
                                                 - beta0 * nu * np.einsum("ki,kij,kj->k", dm, W, dm))
                                    + k * log_B0 + 0.5 * (nu0 - d - 1) * e_logdet.sum()
                                    - 0.5 * np.sum(nu * np.einsum("ij,kji->k", self._W0inv, W))),
            # Bishop 10.75: -E[ln q(Z)]
            "-E[log q(Z)]": self._entropy,
            # Bishop 10.76: -E[ln q(pi)]
            "-E[log q(pi)]": -(np.sum((self._alpha - 1.0) * e_log_pi) + log_dirichlet_normalizer(self._alpha)),
            # Bishop 10.77: -E[ln q(mu, Lambda)]
            "-E[log q(mu,Lambda)]": -np.sum(0.5 * e_logdet + 0.5 * d * np.log(beta / (2 * math.pi)) - 0.5 * d
                                            - entropy_lambda),
        }
        return {key: float(val) for key, val in terms.items()}

    def _sklearn_bound(self) -> float:
        """scikit-learn's ``BayesianGaussianMixture._compute_lower_bound`` for the current state.

        H[q(Z)] - ln C(alpha) - sum_k [ln B(W_k, nu_k) + D(D-1)/4 ln pi] - D/2 sum_k ln beta_k
        """
        d = self._d
        log_B = log_wishart_normalizer(self._logdet_W, self._nu, d) + 0.25 * d * (d - 1) * math.log(math.pi)
        return float(self._entropy - log_dirichlet_normalizer(self._alpha) - log_B.sum()
                     - 0.5 * d * np.log(self._beta).sum())

    def _finalize(self, feats) -> None:
        self.sklearn_lower_bound_ = self._sklearn_bound()
        self.weight_concentration_ = self._alpha
        self.weights_ = self._alpha / self._alpha.sum()
        self.mean_precision_ = self._beta
        self.means_ = self._m + self._shift
        self.degrees_of_freedom_ = self._nu
        self.covariances_ = self._cov
        self.precisions_ = self._prec
        self.precisions_cholesky_ = G.precisions_cholesky(self._prec, "full")

    # ------------------------------------------------------------ inference on new data
    def _weighted_log_prob(self, X) -> np.ndarray:
        """ln rho_nk for new rows (the q(z) update with q(pi), q(mu, Lambda) held fixed)."""
        X = self._validate(X)
        feats = G.QuadraticFeatures(X, "full", n_components=self.n_components, shift=self._shift)
        d = X.shape[1]
        bias = self._e_log_pi() + 0.5 * self._e_logdet_lambda() - 0.5 * d * G.LOG_2PI - 0.5 * d / self._beta
        return G.log_prob_matrix(feats, feats.coefficients(self.means_ - self._shift, self.precisions_, bias))

    def predict_proba(self, X) -> np.ndarray:
        """Responsibilities r_nk = q(z_n = k) (Bishop 10.49) for the rows of X."""
        A = self._weighted_log_prob(X)
        A -= G.logsumexp_rows(A)[:, None]
        return np.exp(A)

    def predict(self, X) -> np.ndarray:
        return self._weighted_log_prob(X).argmax(axis=1)

    def score_samples(self, X) -> np.ndarray:
        """ln sum_k rho_nk: a lower bound on E_q(theta)[ln p(x_n | theta)] (same as scikit-learn's)."""
        return G.logsumexp_rows(self._weighted_log_prob(X))

    def score(self, X, y=None) -> float:
        """Mean over rows of ``score_samples`` (a per-sample bound)."""
        return float(self.score_samples(X).mean())


# --------------------------------------------------------------------------- a second model on the loop
class UnivariateGaussianCAVI(MeanFieldCAVI):
    """CAVI for a Gaussian with unknown mean and precision (Bishop 2006 §10.1.3).

    p(x_n | mu, tau) = N(mu, 1/tau), p(mu | tau) = N(mu_0, 1/(lambda_0 tau)),
    p(tau) = Gam(a_0, b_0); mean field q(mu) q(tau). A minimal second model on
    [`MeanFieldCAVI`][varinf.classical.cavi.MeanFieldCAVI]: two factors, closed-form updates (Bishop 10.26-10.30),
    and an exactly known evidence ``log_evidence(x)`` the ELBO must stay below.
    ``X`` is (n_samples, 1).
    """

    def __init__(self, *, mu0: float = 0.0, lambda0: float = 1.0, a0: float = 1.0, b0: float = 1.0,
                 tol: float = 1e-10, max_iter: int = 200, random_state=None, verbose: int = 0):
        super().__init__(tol=tol, max_iter=max_iter, random_state=random_state, verbose=verbose)
        self.mu0, self.lambda0, self.a0, self.b0 = mu0, lambda0, a0, b0

    def _check_params(self, X):
        if X.shape[1] != 1:
            raise DataError(f"UnivariateGaussianCAVI needs X of shape (n_samples, 1); got {X.shape}.")
        for name in ("lambda0", "a0", "b0"):
            _check_real(getattr(self, name), name, 0.0, strict=True)

    def _prepare(self, X):
        x = X[:, 0]
        return {"n": x.size, "sum": float(x.sum()), "sumsq": float(np.dot(x, x))}

    def _initialize(self, s, random_state):
        self.mean_mu_, self.var_mu_ = self.mu0, 1.0 / self.lambda0  # q(mu)
        self.a_, self.b_ = self.a0, self.b0  # q(tau)

    def _factors(self):
        return ("q(mu)", "q(tau)")

    def _e_sq(self, s):
        """E_q(mu)[sum_n (x_n - mu)^2] and E_q(mu)[(mu - mu_0)^2]."""
        n, m, v = s["n"], self.mean_mu_, self.var_mu_
        return s["sumsq"] - 2 * m * s["sum"] + n * (m * m + v), (m - self.mu0) ** 2 + v

    def _update_factor(self, name, s):
        n, lam0 = s["n"], self.lambda0
        e_tau = self.a_ / self.b_
        if name == "q(mu)":  # Bishop 10.26-10.27
            self.mean_mu_ = (lam0 * self.mu0 + s["sum"]) / (lam0 + n)
            self.var_mu_ = 1.0 / ((lam0 + n) * e_tau)
        else:  # Bishop 10.29-10.30
            sq_data, sq_prior = self._e_sq(s)
            self.a_ = self.a0 + 0.5 * (n + 1)
            self.b_ = self.b0 + 0.5 * (sq_data + lam0 * sq_prior)

    def _bound_terms(self, s):
        n, lam0, a0, b0 = s["n"], self.lambda0, self.a0, self.b0
        e_tau = self.a_ / self.b_
        e_log_tau = digamma(self.a_) - math.log(self.b_)
        sq_data, sq_prior = self._e_sq(s)
        return {
            "E[log p(x|mu,tau)]": 0.5 * n * (e_log_tau - G.LOG_2PI) - 0.5 * e_tau * sq_data,
            "E[log p(mu|tau)]": 0.5 * (math.log(lam0) + e_log_tau - G.LOG_2PI) - 0.5 * lam0 * e_tau * sq_prior,
            "E[log p(tau)]": a0 * math.log(b0) - gammaln(a0) + (a0 - 1) * e_log_tau - b0 * e_tau,
            "-E[log q(mu)]": 0.5 * (1.0 + G.LOG_2PI + math.log(self.var_mu_)),
            "-E[log q(tau)]": self.a_ - math.log(self.b_) + gammaln(self.a_) + (1 - self.a_) * digamma(self.a_),
        }

    def log_evidence(self, X) -> float:
        """Exact ln p(x_1..N) under the Normal-Gamma prior (conjugate closed form)."""
        x = check_data(X)[:, 0]
        n, lam0, a0, b0, mu0 = x.size, self.lambda0, self.a0, self.b0, self.mu0
        xbar = x.mean()
        lam_n, a_n = lam0 + n, a0 + 0.5 * n
        b_n = b0 + 0.5 * np.sum((x - xbar) ** 2) + lam0 * n * (xbar - mu0) ** 2 / (2 * lam_n)
        return float(gammaln(a_n) - gammaln(a0) + a0 * math.log(b0) - a_n * math.log(b_n)
                     + 0.5 * math.log(lam0 / lam_n) - 0.5 * n * G.LOG_2PI)
