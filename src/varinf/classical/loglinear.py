"""Bayesian log-linear model (multinomial logistic regression) with a Gaussian q over the weights.

Eikema & Aziz 2020 ("Bayesian Log-Linear Model"): with weights w_c in R^F for classes c = 1..C,

    p(w) = N(0, prior_std^2 I)                                             (LL.1)
    p(y | x, w) = exp(w_y^T x) / sum_c exp(w_c^T x)                        (LL.2)

The Gaussian prior is not conjugate to the categorical likelihood, so the posterior has
no closed form; "simply assume that the posterior is Gaussian" (Eikema & Aziz 2020):

* ``family="mean_field"``: q(w) = prod_k N(m_k, s_k^2), fitted by black-box VI with any
  estimator of `varinf.classical.bbvi` (score function, Rao-Blackwellised, control
  variates: ``estimator="rao-blackwell+cv"``) or by reparameterisation (``"reparam"``);
* ``family="full_rank"``: q(w) = N(m, L L^T), L lower-triangular with positive diagonal,
  fitted by the reparameterisation gradient of

      ELBO = E_eps[log p(y, w = m + L eps | X)] + sum_k log L_kk + K/2 log(2 pi e)   (LL.3)

The intercept is a feature: pass a column of ones (``fit_intercept=True`` adds it).
Log joint and predictions are vectorised over weight samples and datapoints.
"""

from __future__ import annotations

import math
import time
import warnings
from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils.multiclass import check_classification_targets

from varinf.errors import ConfigError, ConvergenceWarning, DataError

from ._base import _check_int, _check_real, check_fitted, validate_input
from .bbvi import ESTIMATORS, MeanFieldNormal, NoImprovementStop, fit_bbvi

__all__ = ["BayesianLogLinear", "loglinear_log_joint"]

_CHECK_EVERY = 50       # Adam steps between two readings of the stopping rule
_CHECK_DRAWS = 50       # fixed draws of the ELBO read at each check (the draws the trace records with)


def loglinear_log_joint(X: torch.Tensor, y: torch.Tensor, n_classes: int, prior_std: float):
    """log p(y, w | X) of (LL.1-2) as a function of flattened weights w: (S, C F) -> (S,)."""
    f = X.shape[1]

    def log_joint(w):
        W = w.reshape(w.shape[0], n_classes, f)                                 # (S, C, F)
        logits = torch.einsum("nf,scf->snc", X, W)                              # (S, N, C)
        lik = torch.log_softmax(logits, -1).gather(-1, y.expand(w.shape[0], -1)[..., None]).squeeze(-1).sum(-1)
        prior = -0.5 * (w ** 2).sum(-1) / prior_std ** 2 - 0.5 * w.shape[1] * math.log(2 * math.pi * prior_std ** 2)
        return lik + prior

    return log_joint


class BayesianLogLinear(ClassifierMixin, BaseEstimator):
    """Variational Bayesian multinomial logistic regression (mean-field or full-rank Gaussian q).

    A scikit-learn classifier: ``fit(X, y)`` returns self; attributes ``classes_``,
    ``n_features_in_``, ``mean_`` (C, F'), ``cov_`` (K, K) with K = C F' (F' = F + intercept),
    ``elbo_trace_`` [(iteration, MC ELBO)], ``n_iter_``, ``converged_``, ``fit_time_``.
    ``predict_proba`` averages softmax over ``num_samples`` weight draws; ``score`` is the
    accuracy (ClassifierMixin). ``random_state`` seeds the torch generator of the Monte Carlo
    gradients (an int is used as the seed itself; None or a RandomState draws one).

    Stopping (scikit-learn's ``tol`` / ``n_iter_no_change`` rule and defaults of ``MLPClassifier``,
    `NoImprovementStop`): every 50 Adam steps the ELBO per
    datapoint is estimated with 50 draws that are the same at every check; the fit stops once it
    has not risen above its best by more than ``tol`` nats per datapoint at ``n_iter_no_change``
    consecutive checks (``converged_ = True``), else after ``max_iter`` steps with a
    `ConvergenceWarning`. ``tol=None`` turns the rule off: exactly
    ``max_iter`` steps.
    """

    def __init__(self, *, family: str = "full_rank", estimator: str = "reparam", prior_std: float = 1.0,
                 fit_intercept: bool = True, max_iter: int = 2000, tol: float | None = 1e-4,
                 n_iter_no_change: int = 10, lr: float = 0.02, num_samples: int = 8, random_state: int = 0):
        self.family = family
        self.estimator = estimator
        self.prior_std = prior_std
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.lr = lr
        self.num_samples = num_samples
        self.random_state = random_state

    def _design(self, X):
        X = torch.tensor(X, dtype=torch.float64)                               # a copy: X may be read-only
        if self.fit_intercept:
            X = torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype)], 1)
        return X

    def fit(self, X, y):
        t0 = time.perf_counter()
        X = validate_input(self, X, reset=True)
        y = column_or_1d(y, warn=True)                                          # (n, 1) -> (n,) with a warning
        if y.shape != (X.shape[0],):
            raise DataError(f"y must have shape ({X.shape[0]},) to match X; got {y.shape}.")
        check_classification_targets(y)                                         # class labels, not continuous
        classes, y_idx = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise DataError(f"y must contain at least 2 classes; got 1 class ({classes[0]!r}).")
        if self.family not in ("mean_field", "full_rank"):
            raise ConfigError(f"family {self.family!r} is not one of mean_field, full_rank.")
        if self.estimator not in ESTIMATORS:
            raise ConfigError(f"estimator {self.estimator!r} is not one of {sorted(ESTIMATORS)}.")
        if self.family == "full_rank" and self.estimator != "reparam":
            raise ConfigError("the full-rank family is fitted by reparameterisation only (estimator='reparam').")
        prior_std = _check_real(self.prior_std, "prior_std", 0.0, strict=True)
        max_iter = _check_int(self.max_iter, "max_iter", 1)
        s = _check_int(self.num_samples, "num_samples", 1)
        tol = None if self.tol is None else _check_real(self.tol, "tol", 0.0)
        stop = NoImprovementStop(None if tol is None else tol * X.shape[0],      # per datapoint -> total ELBO
                                 _check_int(self.n_iter_no_change, "n_iter_no_change", 1), _CHECK_EVERY)
        Xd = self._design(X)
        self.classes_ = classes
        c, f = len(classes), Xd.shape[1]
        k = c * f
        log_joint = loglinear_log_joint(Xd, torch.as_tensor(y_idx), c, prior_std)
        g = torch.Generator().manual_seed(self._seed())
        if self.family == "mean_field":
            init = torch.stack([torch.zeros(k, dtype=torch.float64), torch.full((k,), -2.0, dtype=torch.float64)], 1)
            res = fit_bbvi(log_joint, MeanFieldNormal(), init, estimator=self.estimator, n_iter=max_iter,
                           lr=self.lr, num_samples=s, generator=g, record_every=max(1, max_iter // 50),
                           num_elbo_samples=_CHECK_DRAWS, tol=stop.tol, n_iter_no_change=stop.n_iter_no_change,
                           check_every=stop.check_every)
            self.mean_ = res.params[:, 0].reshape(c, f)
            self.cov_ = torch.diag((2 * res.params[:, 1]).exp())
            self.elbo_trace_ = res.elbo_trace
            self.n_iter_, self.converged_ = res.n_iter, res.converged
        else:
            self._fit_full_rank(log_joint, k, max_iter, s, g, stop)
            self.mean_ = self._m.reshape(c, f)
        self.fit_time_ = time.perf_counter() - t0
        if tol is not None and not self.converged_:
            warnings.warn(f"BayesianLogLinear did not converge in max_iter={max_iter} steps (the ELBO per datapoint "
                          f"still rose by more than tol={tol:g} within {stop.n_iter_no_change} checks); increase "
                          "max_iter or tol.", ConvergenceWarning, stacklevel=2)
        return self

    def _seed(self) -> int:
        rs = self.random_state
        if isinstance(rs, Integral) and not isinstance(rs, bool):
            return int(rs)
        return int(check_random_state(rs).randint(2 ** 31 - 1))

    def _fit_full_rank(self, log_joint, k, n_iter, s, g, stop):
        m = torch.zeros(k, dtype=torch.float64, requires_grad=True)
        raw = torch.zeros(k, k, dtype=torch.float64)
        raw.diagonal().fill_(-2.0)
        raw.requires_grad_(True)
        opt = torch.optim.Adam([m, raw], lr=self.lr)
        tril = torch.ones(k, k, dtype=torch.bool).tril(-1)
        self.elbo_trace_ = []
        every = max(1, n_iter // 50)
        entropy_const = 0.5 * k * math.log(2 * math.pi * math.e)
        check_eps = torch.randn(_CHECK_DRAWS, k, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

        def cholesky_factor():
            return torch.where(tril, raw, torch.zeros_like(raw)) + torch.diag(raw.diagonal().exp())

        converged, it = False, 0
        for it in range(1, n_iter + 1):
            L = cholesky_factor()
            eps = torch.randn(s, k, generator=g, dtype=torch.float64)
            elbo = log_joint(m + eps @ L.T).mean() + raw.diagonal().sum() + entropy_const   # (LL.3)
            opt.zero_grad()
            (-elbo).backward()
            opt.step()
            if stop.due(it):
                with torch.no_grad():                                           # (LL.3), the same draws every check
                    converged = stop.converged(float(log_joint(m + check_eps @ cholesky_factor().T).mean()
                                                     + raw.diagonal().sum() + entropy_const))
            if it % every == 0 or it == n_iter or converged:
                self.elbo_trace_.append((it, elbo.item()))
            if converged:
                break
        self.n_iter_, self.converged_ = it, converged
        with torch.no_grad():
            L = cholesky_factor()
            self._m, self.cov_ = m.detach(), L @ L.T

    def sample_weights(self, num_samples: int, seed: int = 0) -> torch.Tensor:
        """Draws from q: (S, C, F')."""
        check_fitted(self)
        g = torch.Generator().manual_seed(seed)
        L = torch.linalg.cholesky(self.cov_)
        eps = torch.randn(num_samples, L.shape[0], generator=g, dtype=torch.float64)
        return (self.mean_.reshape(-1) + eps @ L.T).reshape(num_samples, *self.mean_.shape)

    def predict_proba(self, X, num_samples: int = 500, seed: int = 0) -> np.ndarray:
        """Posterior predictive p(y | x) = E_q[softmax(W x)] by Monte Carlo: (N, C)."""
        check_fitted(self)
        X = validate_input(self, X, reset=False)
        W = self.sample_weights(num_samples, seed)
        return torch.softmax(torch.einsum("nf,scf->snc", self._design(X), W), -1).mean(0).numpy()

    def predict(self, X, **kw) -> np.ndarray:
        proba = self.predict_proba(X, **kw)                                     # checks fitted first
        return self.classes_[proba.argmax(1)]
