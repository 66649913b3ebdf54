"""Binary latent-factor model: exact posterior by enumeration, mean-field CAVI, amortised mean field.

Eikema & Aziz 2020 ("Latent Factor Model", "Mean Field Latent Factor Model Inference",
"Amortised Mean Field Inference for Latent Factor Model"). K binary factors jointly
produce N real outputs (the cooperative vector quantiser of Ghahramani 1995):

    z_j ~ Bernoulli(pi_j),  j = 1..K                                        (LF.1)
    x | z ~ N(W^T z + b, sigma^2 I_N),  W in R^{K x N}                      (LF.2)

The factors are independent a priori but coupled in p(z | x) through the
explaining-away term z_i z_j w_i^T w_j, so exact inference costs O(2^K)
(``varinf.enumeration`` does it for K <= 20). Mean field q(z) = prod_j Bernoulli(lambda_j):

    ELBO = E_q[log p(z)] + E_q[log p(x|z)] + H(q)                          (LF.3)
    E_q[log p(z)]   = sum_j lambda_j log pi_j + (1 - lambda_j) log(1 - pi_j)
    E_q[log p(x|z)] = -N/2 log(2 pi sigma^2)
                      - 1/(2 sigma^2) [ ||x - b - W^T lambda||^2 + sum_j lambda_j (1 - lambda_j) ||w_j||^2 ]
    H(q)            = -sum_j lambda_j log lambda_j + (1 - lambda_j) log(1 - lambda_j)

and the CAVI update q_j propto exp E_{-j}[log p(x, z)] (Patlan §II) is

    logit lambda_j = logit pi_j + w_j^T (x - b - sum_{i != j} lambda_i w_i) / sigma^2
                     - ||w_j||^2 / (2 sigma^2)                              (LF.4)

Amortised mean field (Eikema & Aziz 2020): the same family with b_{1..K} = NN(x; phi), one
network shared across datapoints, trained on the mean of (LF.3). Its bound is at
most the per-datapoint CAVI optimum; the difference is the amortisation gap.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from varinf.enumeration import exact_elbo, exact_log_marginal
from varinf.errors import ConfigError, DataError

from ._base import _check_int, check_data
from .cavi import MeanFieldCAVI

__all__ = ["BinaryLatentFactorModel", "MeanFieldLatentFactor", "AmortisedMeanField", "fit_amortised",
           "latent_factor_elbo"]


def _xlogx(p):
    return torch.xlogy(p, p)


def latent_factor_elbo(model: "BinaryLatentFactorModel", x: torch.Tensor, probs: torch.Tensor,
                       terms: bool = False):
    """The closed-form ELBO (LF.3) per datapoint, (B,), for q = prod_j Bernoulli(probs_j); differentiable.

    With ``terms=True`` a dict of the three labelled (B,) terms is returned instead.
    """
    W, b, s2 = model.W, model.b, model.noise_std ** 2
    log_pi, log_1mpi = torch.log(model.prior_probs), torch.log1p(-model.prior_probs)
    e_prior = probs @ log_pi + (1 - probs) @ log_1mpi
    resid = x - b - probs @ W
    e_lik = (-0.5 * model.n_outputs * math.log(2 * math.pi * s2)
             - 0.5 / s2 * ((resid ** 2).sum(-1) + (probs * (1 - probs)) @ (W ** 2).sum(-1)))
    entropy = -(_xlogx(probs) + _xlogx(1 - probs)).sum(-1)
    if terms:
        return {"E[log p(z)] (LF.3)": e_prior, "E[log p(x|z)] (LF.3)": e_lik, "H(q) (LF.3)": entropy}
    return e_prior + e_lik + entropy


class BinaryLatentFactorModel:
    """p(z) p(x|z) of (LF.1-2), float64 torch; ``log_joint``/``latent_dim`` fit ``varinf.enumeration``."""

    def __init__(self, W, b=None, noise_std: float = 0.5, prior_probs=None):
        W = torch.as_tensor(W, dtype=torch.float64)
        if W.ndim != 2 or not torch.isfinite(W).all():
            raise DataError(f"W must be a finite (K, N) matrix; got shape {tuple(W.shape)}.")
        k, n = W.shape
        self.W = W
        self.b = torch.zeros(n, dtype=torch.float64) if b is None else torch.as_tensor(b, dtype=torch.float64)
        if self.b.shape != (n,):
            raise DataError(f"b must have shape ({n},); got {tuple(self.b.shape)}.")
        if not (isinstance(noise_std, (int, float)) and noise_std > 0):
            raise ConfigError(f"noise_std must be a positive number; got {noise_std!r}.")
        self.noise_std = float(noise_std)
        pp = torch.full((k,), 0.5, dtype=torch.float64) if prior_probs is None else \
            torch.as_tensor(prior_probs, dtype=torch.float64)
        if pp.shape != (k,) or not ((pp > 0) & (pp < 1)).all():
            raise DataError(f"prior_probs must be ({k},) with entries in (0, 1).")
        self.prior_probs = pp
        self.latent_dim, self.n_outputs = k, n

    def __repr__(self) -> str:
        # readable (and stable) in an estimator's repr and in the pytest IDs of the estimator checks
        return f"BinaryLatentFactorModel(n_factors={self.latent_dim}, n_outputs={self.n_outputs}, noise_std={self.noise_std:g})"

    @classmethod
    def random(cls, n_factors: int, n_outputs: int, noise_std: float = 0.5, seed: int = 0,
               prior_prob: float = 0.3):
        g = torch.Generator().manual_seed(seed)
        W = torch.randn(n_factors, n_outputs, generator=g, dtype=torch.float64)
        return cls(W, noise_std=noise_std, prior_probs=torch.full((n_factors,), prior_prob, dtype=torch.float64))

    def sample(self, n: int, seed: int = 0):
        """(z, x): (n, K) factors and (n, N) outputs."""
        g = torch.Generator().manual_seed(seed)
        z = torch.bernoulli(self.prior_probs.expand(n, -1), generator=g)
        x = z @ self.W + self.b + self.noise_std * torch.randn(n, self.n_outputs, generator=g, dtype=torch.float64)
        return z, x

    def log_joint(self, x, z):
        """log p(x, z): x (B, N), z (..., B, K) -> (..., B)."""
        s2 = self.noise_std ** 2
        prior = (z * torch.log(self.prior_probs) + (1 - z) * torch.log1p(-self.prior_probs)).sum(-1)
        resid = x - self.b - z @ self.W
        return prior - 0.5 * self.n_outputs * math.log(2 * math.pi * s2) - 0.5 * (resid ** 2).sum(-1) / s2

    def check_x(self, X) -> torch.Tensor:
        X = check_data(X, n_features=self.n_outputs)
        return torch.as_tensor(X)

    def exact_log_marginal(self, X):
        """log p(x) by enumerating the 2^K states: (B,) (K <= 20)."""
        return exact_log_marginal(self, self.check_x(X))

    def exact_elbo(self, X, probs):
        """ELBO of q = prod Bernoulli(probs) by enumeration (a check on the closed form (LF.3))."""
        probs = torch.as_tensor(probs, dtype=torch.float64)
        return exact_elbo(self, torch.logit(probs), self.check_x(X))


class MeanFieldLatentFactor(MeanFieldCAVI):
    """Per-datapoint mean-field CAVI (LF.4) for a fixed [`BinaryLatentFactorModel`][varinf.classical.latent_factor.BinaryLatentFactorModel].

    All datapoints are updated at once (vectorised); one factor ``q(z_j)`` per
    block, so ``bound_trace_`` shows the total ELBO after every factor update.
    Attributes after ``fit(X)``: ``probs_`` (B, K) = lambda, ``elbo_`` (B,) per datapoint,
    ``lower_bound_`` (the total ELBO), ``bound_terms_``.
    """

    def __init__(self, model: BinaryLatentFactorModel, *, tol: float = 1e-8, max_iter: int = 200,
                 init: str = "random", random_state=None, verbose: int = 0):
        super().__init__(tol=tol, max_iter=max_iter, random_state=random_state, verbose=verbose)
        self.model = model
        self.init = init

    def _check_params(self, X):
        if not isinstance(self.model, BinaryLatentFactorModel):
            raise ConfigError("model must be a BinaryLatentFactorModel.")
        if X.shape[1] != self.model.n_outputs:
            raise DataError(f"X has {X.shape[1]} features but the model has N={self.model.n_outputs} outputs.")
        if self.init not in ("random", "prior"):
            raise ConfigError(f"init {self.init!r} is not one of random, prior.")

    def _prepare(self, X):
        return torch.as_tensor(X)

    def _initialize(self, data, random_state):
        k = self.model.latent_dim
        if self.init == "prior":
            self.probs_ = self.model.prior_probs.expand(data.shape[0], k).clone()
        else:
            self.probs_ = torch.as_tensor(random_state.uniform(0.05, 0.95, size=(data.shape[0], k)))
        self._names = [f"q(z_{j})" for j in range(k)]

    def _factors(self):
        return self._names

    def _update_factor(self, name, x):
        j = self._names.index(name)
        m = self.model
        w = m.W[j]
        resid = x - m.b - self.probs_ @ m.W + self.probs_[:, j:j + 1] * w      # x - b - sum_{i != j} lambda_i w_i
        logit = (torch.logit(m.prior_probs[j]) + resid @ w / m.noise_std ** 2
                 - 0.5 * (w @ w) / m.noise_std ** 2)                          # (LF.4)
        self.probs_[:, j] = torch.sigmoid(logit)

    def _bound_terms(self, x):
        return {k: float(v.sum()) for k, v in latent_factor_elbo(self.model, x, self.probs_, terms=True).items()}

    def _finalize(self, x):
        self.elbo_ = latent_factor_elbo(self.model, x, self.probs_)

    def kl_to_posterior(self, X):
        """KL(q || p(z|x)) = log p(x) - ELBO per datapoint (exact, by enumeration): (B,)."""
        self._check_fitted()
        return self.model.exact_log_marginal(X) - self.elbo_


class AmortisedMeanField(nn.Module):
    """q(z | x) = prod_j Bernoulli(b_j), b = NN(x; phi): one MLP shared by all datapoints (Eikema & Aziz 2020)."""

    def __init__(self, n_outputs: int, n_factors: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_outputs, hidden), nn.Tanh(), nn.Linear(hidden, n_factors)).double()

    def forward(self, x):
        return torch.sigmoid(self.net(x))


def fit_amortised(model: BinaryLatentFactorModel, X, *, hidden: int = 64, n_iter: int = 2000, lr: float = 1e-2,
                  seed: int = 0) -> tuple[AmortisedMeanField, list]:
    """Train the amortised encoder on the mean closed-form ELBO (LF.3) of ``X`` (full batch, Adam).

    Returns ``(encoder, trace)``, trace the mean ELBO every 50 iterations.
    """
    x = model.check_x(X)
    n_iter = _check_int(n_iter, "n_iter", 1)
    with torch.random.fork_rng(devices=[]):   # the initial weights from ``seed``; the caller's global RNG untouched
        torch.manual_seed(seed)
        enc = AmortisedMeanField(model.n_outputs, model.latent_dim, hidden)
    opt = torch.optim.Adam(enc.parameters(), lr=lr)
    trace = []
    for it in range(n_iter):
        probs = enc(x).clamp(1e-12, 1 - 1e-12)
        loss = -latent_factor_elbo(model, x, probs).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it % 50 == 0 or it == n_iter - 1:
            trace.append((it, -loss.item()))
    return enc, trace

