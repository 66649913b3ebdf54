"""Black-box variational inference (BBVI): score-function, Rao-Blackwellised,
control-variate and reparameterisation gradients of the ELBO.

Patlan §III; Ranganath, Gerrish & Blei (2014), "Black Box Variational Inference".
For any ``log_joint(z) = log p(x, z)`` (the data x are closed over) and a mean-field
family q(z | lambda) = prod_j q_j(z_j | lambda_j), the BBVI identity

    grad L = E_q[ grad log q(z) (log p(x, z) - log q(z)) ]                (Patlan Eq. 1)

is estimated by Monte Carlo with S draws z_s ~ q:

    g = (1/S) sum_s grad log q(z_s) (log p(x, z_s) - log q(z_s))          (Patlan Eq. 2)

Variance reduction (Patlan §III.B; Ranganath et al. 2014 §3):

* Rao-Blackwellisation, per factor. The gradient for lambda_j only needs the
  terms of log p that contain z_j (its Markov blanket, ``log_joint_terms`` column
  j) and log q_j; the other terms are integrated out exactly (they are
  independent of z_j under q and multiply a zero-mean score):

      g_j = (1/S) sum_s grad_j log q_j(z_sj) (log p_j(x, z_s) - log q_j(z_sj))   (RBBVI Eq. 5)

  Without ``log_joint_terms`` the full log p is used for every j (only the
  log q_{-j} terms are dropped), which is still unbiased but reduces less.
* Control variates. With h = grad_j log q_j (E_q[h] = 0) and f = h (log p_j - log q_j),
  each component j uses  f - a_j h  with the optimal scalar

      a_j* = sum_d Cov(f_d, h_d) / sum_d Var(h_d)                         (RBBVI Eq. 9)

  (d runs over the parameters of component j). a_j* is estimated from a
  *separate, independent* set of ``num_cv_samples`` draws, so it is independent
  of the draws it multiplies and the estimator stays exactly unbiased
  (E[a h] = E[a] E[h] = 0). Using the same draws would bias it by O(1/S).

The reparameterisation estimator (Normal family only; Kingma & Welling 2014):
z = m + s * eps, g = grad_lambda (1/S) sum_s log p(x, z(eps_s)) + grad_lambda H(q)
(entropy in closed form).

Parameters are a ``(K, P)`` tensor: P = 2 for [`MeanFieldNormal`][varinf.classical.bbvi.MeanFieldNormal]
(loc, log_scale), P = 1 for [`MeanFieldBernoulli`][varinf.classical.bbvi.MeanFieldBernoulli] (logit). Every gradient
function returns a ``(K, P)`` tensor, the gradient of the ELBO with respect to it.
All work is vectorised over samples; ``log_joint`` maps ``(S, K) -> (S,)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from varinf.errors import ConfigError, DataError

__all__ = [
    "MeanFieldNormal",
    "MeanFieldBernoulli",
    "score_function_gradient",
    "reparameterization_gradient",
    "elbo_estimate",
    "fit_bbvi",
    "BBVIResult",
    "NoImprovementStop",
    "GaussianMeanModel",
    "ESTIMATORS",
    "estimator_gradient",
]


def _check_params(params: torch.Tensor, p: int, name: str) -> torch.Tensor:
    if not torch.is_tensor(params) or params.ndim != 2 or params.shape[1] != p:
        shape = tuple(params.shape) if torch.is_tensor(params) else type(params).__name__
        raise DataError(f"{name} parameters must be a (K, {p}) tensor; got {shape}.")
    if not torch.isfinite(params).all():
        raise DataError(f"{name} parameters contain non-finite values.")
    return params


class MeanFieldNormal:
    """q(z) = prod_j N(z_j | m_j, exp(2 log s_j)); parameters (K, 2) = [m, log s]."""

    n_params = 2
    reparameterizable = True

    def check(self, params):
        return _check_params(params, 2, "MeanFieldNormal")

    def sample(self, params, num_samples, generator=None):
        m, s = params[:, 0], params[:, 1].exp()
        eps = torch.randn((num_samples, params.shape[0]), generator=generator, dtype=params.dtype)
        return m + s * eps

    def log_prob_components(self, params, z):
        """log q_j(z_j): (S, K)."""
        m, log_s = params[:, 0], params[:, 1]
        return -0.5 * math.log(2 * math.pi) - log_s - 0.5 * ((z - m) / log_s.exp()) ** 2

    def score(self, params, z):
        """grad_{lambda_j} log q_j(z_j): (S, K, 2) = [(z-m)/s^2, ((z-m)/s)^2 - 1]."""
        m, s = params[:, 0], params[:, 1].exp()
        u = (z - m) / s
        return torch.stack([u / s, u ** 2 - 1.0], dim=-1)

    def entropy(self, params):
        """H(q) = sum_j [1/2 log(2 pi e) + log s_j] (closed form)."""
        return (0.5 * math.log(2 * math.pi * math.e) + params[:, 1]).sum()


class MeanFieldBernoulli:
    """q(z) = prod_j Bernoulli(z_j | sigmoid(eta_j)); parameters (K, 1) = [eta]."""

    n_params = 1
    reparameterizable = False

    def check(self, params):
        return _check_params(params, 1, "MeanFieldBernoulli")

    def sample(self, params, num_samples, generator=None):
        p = torch.sigmoid(params[:, 0]).expand(num_samples, -1)
        return torch.bernoulli(p, generator=generator)

    def log_prob_components(self, params, z):
        eta = params[:, 0]
        return z * eta - torch.nn.functional.softplus(eta)

    def score(self, params, z):
        """grad_eta log q_j(z_j) = z_j - sigmoid(eta_j): (S, K, 1)."""
        return (z - torch.sigmoid(params[:, 0]))[..., None]

    def entropy(self, params):
        p = torch.sigmoid(params[:, 0])
        return -(torch.xlogy(p, p) + torch.xlogy(1 - p, 1 - p)).sum()


def _check_samples(num_samples, name="num_samples", low=1):
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < low:
        raise ConfigError(f"{name} must be an integer >= {low}; got {num_samples!r}.")


def _signals(log_joint, log_joint_terms, family, params, z, rao_blackwellize):
    """The per-component learning signal (S, K): log p(.) - log q(.) under the chosen estimator."""
    log_q = family.log_prob_components(params, z)                          # (S, K)
    if not rao_blackwellize:                                               # Eq. 2: the full signal
        f = log_joint(z) - log_q.sum(-1)                                   # (S,)
        return f[:, None].expand_as(log_q)
    if log_joint_terms is not None:                                        # RBBVI Eq. 5: Markov blanket
        lp = log_joint_terms(z)
        if lp.shape != log_q.shape:
            raise DataError(f"log_joint_terms must return (S, K) = {tuple(log_q.shape)}; got {tuple(lp.shape)}.")
        return lp - log_q
    return log_joint(z)[:, None] - log_q                                   # only log q_{-j} dropped


@torch.no_grad()
def score_function_gradient(log_joint: Callable, family, params: torch.Tensor, num_samples: int = 10,
                            generator: torch.Generator | None = None, *, rao_blackwellize: bool = False,
                            control_variate: bool = False, log_joint_terms: Callable | None = None,
                            num_cv_samples: int | None = None) -> torch.Tensor:
    """Score-function (BBVI) estimate of grad_lambda ELBO: (K, P).

    ``rao_blackwellize``: per-factor signals (module docstring, RBBVI Eq. 5);
    ``control_variate``: subtract a_j* h_j with a_j* from ``num_cv_samples``
    independent extra draws (default ``num_samples``; at least 2), keeping the
    estimator unbiased.
    """
    params = family.check(params)
    _check_samples(num_samples)
    z = family.sample(params, num_samples, generator)                      # (S, K)
    h = family.score(params, z)                                            # (S, K, P)
    f = h * _signals(log_joint, log_joint_terms, family, params, z, rao_blackwellize)[..., None]
    if not control_variate:
        return f.mean(0)
    n_cv = num_samples if num_cv_samples is None else num_cv_samples
    _check_samples(n_cv, "num_cv_samples", 2)
    z2 = family.sample(params, n_cv, generator)                            # independent draws for a*
    h2 = family.score(params, z2)
    f2 = h2 * _signals(log_joint, log_joint_terms, family, params, z2, rao_blackwellize)[..., None]
    fc, hc = f2 - f2.mean(0), h2 - h2.mean(0)
    cov = (fc * hc).sum(0).sum(-1) / (n_cv - 1)                            # sum_d Cov(f_d, h_d): (K,)
    var = (hc * hc).sum(0).sum(-1) / (n_cv - 1)                            # sum_d Var(h_d):      (K,)
    a = cov / var.clamp_min(torch.finfo(var.dtype).tiny)                   # RBBVI Eq. 9
    return (f - a[None, :, None] * h).mean(0)


def reparameterization_gradient(log_joint: Callable, family, params: torch.Tensor, num_samples: int = 10,
                                generator: torch.Generator | None = None) -> torch.Tensor:
    """Reparameterisation estimate of grad_lambda ELBO: (K, 2); ``log_joint`` must be differentiable in z."""
    if not getattr(family, "reparameterizable", False):
        raise ConfigError(f"{type(family).__name__} has no reparameterisation; use score_function_gradient.")
    params = family.check(params)
    _check_samples(num_samples)
    with torch.enable_grad():
        lam = params.detach().clone().requires_grad_(True)
        z = family.sample(lam, num_samples, generator)                     # z = m + s eps
        objective = log_joint(z).mean() + family.entropy(lam)
        (grad,) = torch.autograd.grad(objective, lam)
    return grad


@torch.no_grad()
def elbo_estimate(log_joint: Callable, family, params: torch.Tensor, num_samples: int = 100,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Monte Carlo ELBO (1/S) sum_s log p(x, z_s) + H(q) (entropy exact): a scalar tensor."""
    params = family.check(params)
    _check_samples(num_samples)
    z = family.sample(params, num_samples, generator)
    return log_joint(z).mean() + family.entropy(params)


#: estimator name -> keyword arguments of score_function_gradient (or "reparam")
ESTIMATORS = {
    "score": dict(rao_blackwellize=False, control_variate=False),
    "score+cv": dict(rao_blackwellize=False, control_variate=True),
    "rao-blackwell": dict(rao_blackwellize=True, control_variate=False),
    "rao-blackwell+cv": dict(rao_blackwellize=True, control_variate=True),
    "reparam": None,
}


def estimator_gradient(name: str, log_joint, family, params, num_samples=10, generator=None,
                       log_joint_terms=None) -> torch.Tensor:
    """Gradient from the estimator ``name`` (a key of `ESTIMATORS`)."""
    if name not in ESTIMATORS:
        raise ConfigError(f"estimator {name!r} is not one of {sorted(ESTIMATORS)}.")
    if ESTIMATORS[name] is None:
        return reparameterization_gradient(log_joint, family, params, num_samples, generator)
    return score_function_gradient(log_joint, family, params, num_samples, generator,
                                   log_joint_terms=log_joint_terms, **ESTIMATORS[name])


@dataclass
class BBVIResult:
    params: torch.Tensor
    elbo_trace: list = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False


class NoImprovementStop:
    """Stopping rule of a stochastic ELBO ascent: scikit-learn's ``tol`` / ``n_iter_no_change``.

    As ``MLPClassifier`` and ``SGDClassifier`` do for their loss: every ``check_every``
    iterations the objective is read; when it has not risen above its best value by more than
    ``tol`` at ``n_iter_no_change`` consecutive checks, the fit has converged. The caller reads the
    ELBO with the *same* draws at every check (common random numbers: a fixed noise tensor or a
    generator re-seeded with one seed), so a change between checks is a change of q, not of the
    Monte Carlo draws. ``tol=None`` turns the rule off (the fit runs all its iterations).
    """

    def __init__(self, tol: float | None, n_iter_no_change: int = 5, check_every: int = 50):
        if tol is not None and not (isinstance(tol, (int, float)) and not isinstance(tol, bool)
                                    and math.isfinite(tol) and tol >= 0):
            raise ConfigError(f"tol must be a finite number >= 0, or None for no stopping rule; got {tol!r}.")
        _check_samples(n_iter_no_change, "n_iter_no_change")
        _check_samples(check_every, "check_every")
        self.tol, self.n_iter_no_change, self.check_every = tol, n_iter_no_change, check_every
        self.best, self.no_change = -math.inf, 0

    def due(self, it: int) -> bool:
        """Whether iteration ``it`` (1-based) is a check."""
        return self.tol is not None and it % self.check_every == 0

    def converged(self, value: float) -> bool:
        """Record the objective read at a check; True once it stalled ``n_iter_no_change`` checks in a row."""
        if value > self.best + self.tol:
            self.best, self.no_change = value, 0
        else:
            self.best, self.no_change = max(self.best, value), self.no_change + 1
        return self.no_change >= self.n_iter_no_change


def fit_bbvi(log_joint: Callable, family, init_params: torch.Tensor, *, estimator: str = "rao-blackwell+cv",
             n_iter: int = 500, lr: float = 0.05, num_samples: int = 10, generator=None,
             log_joint_terms=None, elbo_fn: Callable | None = None, record_every: int = 10,
             num_elbo_samples: int = 200, tol: float | None = None, n_iter_no_change: int = 5,
             check_every: int = 50) -> BBVIResult:
    """Maximise the ELBO by stochastic gradient ascent (Adam) with the chosen gradient estimator.

    ``elbo_fn(params)`` (e.g. a closed form) is recorded every ``record_every``
    iterations in ``elbo_trace`` as ``(iteration, elbo)``; without it an MC estimate
    with ``num_elbo_samples`` draws is recorded.

    ``tol`` (None: off, all ``n_iter`` iterations run) stops the ascent by
    `NoImprovementStop`: every ``check_every`` iterations the ELBO is read (``elbo_fn``,
    else an MC estimate with ``num_elbo_samples`` draws from seed 0 at every check)
    and the fit stops once it has not improved on its best by more than ``tol`` (absolute, in
    nats) at ``n_iter_no_change`` consecutive checks; ``result.converged`` says whether it did.
    """
    _check_samples(n_iter, "n_iter")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ConfigError(f"lr must be a positive number; got {lr!r}.")
    params = family.check(init_params).detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([params], lr=lr)
    result = BBVIResult(params=params)

    def record(it):
        with torch.no_grad():
            value = (elbo_fn(params.detach()) if elbo_fn is not None else
                     elbo_estimate(log_joint, family, params.detach(), num_elbo_samples, generator))
        result.elbo_trace.append((it, float(value)))

    stop = NoImprovementStop(tol, n_iter_no_change, check_every)
    def check_value() -> float:
        with torch.no_grad():       # the same draws at every check (their own generator: the fit's draws are untouched)
            return float(elbo_fn(params.detach()) if elbo_fn is not None else
                         elbo_estimate(log_joint, family, params.detach(), num_elbo_samples,
                                       torch.Generator().manual_seed(0)))

    record(0)
    it = 0
    for it in range(1, n_iter + 1):
        g = estimator_gradient(estimator, log_joint, family, params.detach(), num_samples, generator,
                               log_joint_terms)
        opt.zero_grad()
        params.grad = -g                                                   # ascent on the ELBO
        opt.step()
        result.converged = stop.due(it) and stop.converged(check_value())
        if it % record_every == 0 or it == n_iter or result.converged:
            record(it)
        if result.converged:
            break
    result.params = params.detach()
    result.n_iter = it
    return result


class GaussianMeanModel:
    """Conjugate test model: z_j ~ N(0, tau^2), x_nj | z ~ N(z_j, sigma^2), j = 1..K, n = 1..N.

    Everything the estimators are checked against is closed form: ``log_joint``
    (S, K) -> (S,), ``log_joint_terms`` (the Markov blanket of each z_j: its prior
    and its N likelihood terms), ``exact_elbo`` for a MeanFieldNormal q (differentiable,
    so autograd gives the exact gradient) and the exact posterior N(mu_j, v).
    """

    def __init__(self, x, prior_std: float = 1.0, noise_std: float = 1.0):
        x = torch.as_tensor(x, dtype=torch.get_default_dtype())
        if x.ndim != 2 or x.shape[0] == 0 or not torch.isfinite(x).all():
            raise DataError(f"x must be a finite (N, K) array with N >= 1; got shape {tuple(x.shape)}.")
        if not (prior_std > 0 and noise_std > 0):
            raise ConfigError("prior_std and noise_std must be positive.")
        self.x, self.tau, self.sigma = x, float(prior_std), float(noise_std)
        self.n, self.k = x.shape
        self.sum_x, self.sum_x2 = x.sum(0), (x ** 2).sum(0)

    def log_joint_terms(self, z):
        """log p(z_j) + sum_n log N(x_nj | z_j, sigma^2): (S, K)."""
        prior = -0.5 * math.log(2 * math.pi * self.tau ** 2) - 0.5 * z ** 2 / self.tau ** 2
        sq = self.sum_x2 - 2 * z * self.sum_x + self.n * z ** 2                 # sum_n (x_nj - z_j)^2
        lik = -0.5 * self.n * math.log(2 * math.pi * self.sigma ** 2) - 0.5 * sq / self.sigma ** 2
        return prior + lik

    def log_joint(self, z):
        return self.log_joint_terms(z).sum(-1)

    def exact_elbo(self, params):
        """E_q[log p(x, z)] + H(q) in closed form for q = MeanFieldNormal(params)."""
        m, s2 = params[:, 0], (2 * params[:, 1]).exp()
        e_prior = -0.5 * math.log(2 * math.pi * self.tau ** 2) - 0.5 * (m ** 2 + s2) / self.tau ** 2
        e_sq = self.sum_x2 - 2 * m * self.sum_x + self.n * (m ** 2 + s2)
        e_lik = -0.5 * self.n * math.log(2 * math.pi * self.sigma ** 2) - 0.5 * e_sq / self.sigma ** 2
        return (e_prior + e_lik).sum() + MeanFieldNormal().entropy(params)

    def exact_gradient(self, params):
        with torch.enable_grad():
            lam = params.detach().clone().requires_grad_(True)
            (g,) = torch.autograd.grad(self.exact_elbo(lam), lam)
        return g

    def posterior(self):
        """Exact posterior mean and variance of each z_j (same variance for every j)."""
        prec = 1 / self.tau ** 2 + self.n / self.sigma ** 2
        return self.sum_x / self.sigma ** 2 / prec, torch.full((self.k,), 1 / prec)

    def log_marginal(self):
        mu, v = self.posterior()
        p = torch.cat([mu[:, None], 0.5 * v.log()[:, None]], 1)
        return self.exact_elbo(p)                                              # the bound is tight at q = posterior
