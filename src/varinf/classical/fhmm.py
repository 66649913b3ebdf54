"""Factorial hidden Markov model: exact, structured and fully factorised mean-field inference, an
amortised inference network, EM learning.

Eikema & Aziz (2020), "Variational Inference: The Foundations" (slides "Factorial HMMs",
"Original FHMM Inference", "Mean field FHMM Inference", "Inference network for FHMMs");
Ghahramani & Jordan (1997), "Factorial hidden Markov models", Machine Learning 29:245-273 (G&J). M chains of L
states, Gaussian outputs y_t in R^D:

    p(s^m_1) = pi_m,  p(s^m_t = j | s^m_{t-1} = i) = A_m[i, j]                      (G&J 2)
    y_t | s_t ~ N( sum_m W_m s^m_t, diag(C) ),  s^m_t one-hot in {0,1}^L              (G&J 3)

*Exact inference* runs forward-backward on the L^M joint state space, whose
transition matrix is the Kronecker product of the A_m: cost O(T L^{2M}).

*Mean field* (G&J §3.3, structured: chains independent, each a full HMM):

    q(s) = prod_m (1/Z_m) p_m(s^m) prod_t h^m_t(s^m_t)
    log h^m_t = W_m^T C^{-1} (y_t - sum_{n != m} W_n <s^n_t>) - 1/2 diag(W_m^T C^{-1} W_m)   (G&J 12b)

Each update of chain m is one forward-backward on its own expected-emission terms,
O(T L^2), so a sweep costs O(M L^2 T); it is the exact coordinate maximiser of the bound

    F = E_q[log p(s_1)] + E_q[log p(s_t|s_{t-1})] + E_q[log p(y|s)] + H(q)          (FH.1)
    H(q) = sum_m [log Z_m - sum_t <s^m_t>^T log h^m_t] - E_q[log p(s)]              (FH.2)
    E_q[log p(y|s)] = sum_t -D/2 log 2 pi - 1/2 sum_d log C_d
                      - 1/2 [y_t^T C^{-1} y_t - 2 y_t^T C^{-1} W <s_t> + tr(W^T C^{-1} W <s_t s_t^T>)]  (FH.3)

(W = [W_1 ... W_M], D x ML; under q, <s^m s^n^T> = <s^m><s^n>^T for m != n and
diag(<s^m>) for m = n). For the exact posterior F = log p(y).

*Fully factorised mean field* (Eikema & Aziz, "Mean field FHMM Inference": q(s, z) = prod_t q(s_t) q(z_t);
for M chains this is G&J's "completely factorized" variational approximation):

    q(S) = prod_t prod_m Cat(s^m_t; gamma^m_t)                                        (FF.1)
    log gamma^m_t(l) = [t = 1] log pi_m[l] + [t > 1] sum_k gamma^m_{t-1}(k) log A_m[k, l]
                       + [t < T] sum_k log A_m[l, k] gamma^m_{t+1}(k) + log h^m_t(l) + const   (FF.2)

with log h^m_t of (G&J 12b). (FF.2) is the exact maximiser of F over one q(s^m_t); sites of one chain
at times of equal parity do not interact, so each chain is updated in two vectorised half-sweeps
(even t, odd t), each an exact block coordinate step. Its bound, with every expectation in closed form:

    F = sum_{m,l} gamma^m_1(l) log pi_m[l] + sum_{t>1,m} gamma^m_{t-1}^T log A_m gamma^m_t
        + E_q[log p(y|s)] - sum_{t,m,l} gamma^m_t(l) log gamma^m_t(l)                (FF.3)
    E_q[log p(y|s)] = sum_t [ -D/2 log 2 pi - 1/2 sum_d log C_d - 1/2 |y_t - sum_m W_m gamma^m_t|^2_{C^-1}
                              - 1/2 sum_m ( gamma^m_t . diag(W_m^T C^-1 W_m) - |W_m gamma^m_t|^2_{C^-1} ) ] (FF.4)

*Restarts and deterministic annealing* (both mean-field variants): ``n_init`` starts from seeds
seed, seed + 1, ..., keeping the largest bound; ``betas`` = increasing inverse temperatures 0 < beta <= 1,
one sweep each before the ordinary (beta = 1) sweeps, maximising F_beta = beta E_q[log p(Y, S)] + H(q)
(Ueda & Nakano 1998, "Deterministic annealing EM algorithm", Neural Networks 11): every update above
becomes q proportional to exp(beta * [its beta = 1 log-potential]).

*Amortised inference* (Eikema & Aziz, "Inference network for FHMMs"): [`FHMMInferenceNetwork`][varinf.classical.fhmm.FHMMInferenceNetwork], a
bidirectional GRU over y_{1:T} giving the logits of (FF.1), trained by [`fit_fhmm_inference_network`][varinf.classical.fhmm.fit_fhmm_inference_network]
on the exact (FF.3); no sampling.

*EM* (G&J Appendix A) alternates either E-step with the M-step
W = (sum_t y_t <s_t>^T)(sum_t <s_t s_t^T>)^+, C = diag(1/T sum_t y_t y_t^T - W <s_t> y_t^T / T),
pi_m = <s^m_1>, A_m propto sum_t <s^m_{t-1} s^m_t^T>. [`FactorialHMM`][varinf.classical.fhmm.FactorialHMM] runs it on the
shared [`CoordinateAscent`][varinf.classical._base.CoordinateAscent] loop (blocks "E-step", "M-step").
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from varinf.errors import ConfigError, DataError

from ._base import CoordinateAscent, _check_int, _check_real, check_data

__all__ = ["FHMMParams", "FactorialHMM", "forward_backward", "exact_posterior", "mean_field_posterior",
           "expected_complete_loglik", "sample_fhmm", "chain_log_potential", "factorised_mean_field_posterior",
           "factorised_elbo_terms", "factorised_site_logits", "FHMMInferenceNetwork", "fit_fhmm_inference_network"]


@dataclass
class FHMMParams:
    """pi (M, L), A (M, L, L) row-stochastic, W (M, D, L), C (D,) diagonal output variances."""

    pi: np.ndarray
    A: np.ndarray
    W: np.ndarray
    C: np.ndarray

    @property
    def shape(self):
        m, d, l_ = self.W.shape
        return m, l_, d

    def validate(self):
        m, l_, d = self.shape
        if self.pi.shape != (m, l_) or self.A.shape != (m, l_, l_) or self.C.shape != (d,):
            raise DataError(f"FHMM parameter shapes disagree: pi {self.pi.shape}, A {self.A.shape}, "
                            f"W {self.W.shape}, C {self.C.shape}; expected (M, L), (M, L, L), (M, D, L), (D,).")
        if np.any(self.C <= 0) or not np.allclose(self.A.sum(-1), 1) or not np.allclose(self.pi.sum(-1), 1):
            raise DataError("FHMM parameters invalid: C must be positive, rows of A and pi must sum to 1.")
        return self

    @classmethod
    def random(cls, n_chains, n_states, n_outputs, seed=0, scale=1.0, stickiness=0.8):
        rng = np.random.default_rng(seed)
        pi = rng.dirichlet(np.ones(n_states), size=n_chains)
        A = rng.dirichlet(np.ones(n_states), size=(n_chains, n_states)) * (1 - stickiness)
        A += stickiness * np.eye(n_states)
        W = scale * rng.normal(size=(n_chains, n_outputs, n_states))
        return cls(pi, A, W, np.full(n_outputs, 0.5))


def sample_fhmm(params: FHMMParams, T: int, seed: int = 0):
    """(states (T, M) ints, Y (T, D))."""
    rng = np.random.default_rng(seed)
    m, l_, d = params.shape
    s = np.zeros((T, m), dtype=int)
    for c in range(m):
        s[0, c] = rng.choice(l_, p=params.pi[c])
        for t in range(1, T):
            s[t, c] = rng.choice(l_, p=params.A[c, s[t - 1, c]])
    mean = sum(params.W[c][:, s[:, c]].T for c in range(m))
    return s, mean + rng.normal(size=(T, d)) * np.sqrt(params.C)


def forward_backward(log_pi: np.ndarray, A: np.ndarray, log_e: np.ndarray):
    """Scaled forward-backward for one HMM with (unnormalised) log emissions log_e (T, S).

    Returns gamma (T, S), xi summed over t (S, S), and log Z = log sum_s p(s) prod_t e_t(s_t).
    Cost O(T S^2).
    """
    T, S = log_e.shape
    shift = log_e.max(1, keepdims=True)
    e = np.exp(log_e - shift)
    alpha = np.empty((T, S))
    c = np.empty(T)
    a = np.exp(log_pi) * e[0]
    c[0] = a.sum()
    alpha[0] = a / c[0]
    for t in range(1, T):
        a = (alpha[t - 1] @ A) * e[t]
        c[t] = a.sum()
        alpha[t] = a / c[t]
    beta = np.ones((T, S))
    xi = np.zeros((S, S))
    for t in range(T - 1, 0, -1):
        b = e[t] * beta[t]
        xi += np.outer(alpha[t - 1], b) * A / c[t]
        beta[t - 1] = (A @ b) / c[t]
    gamma = alpha * beta
    return gamma, xi, float(np.log(c).sum() + shift.sum())


def _log_gauss_const(C):
    return -0.5 * len(C) * math.log(2 * math.pi) - 0.5 * np.log(C).sum()


def _check_inputs(params: FHMMParams, Y) -> np.ndarray:
    params.validate()
    return check_data(Y, n_features=params.shape[2], name="Y")


def _joint_states(m, l_):
    return np.array(list(itertools.product(range(l_), repeat=m)))              # (L^M, M), chain 0 slowest


def exact_posterior(params: FHMMParams, Y: np.ndarray) -> dict:
    """Exact E-step by forward-backward on the L^M joint chain: O(T L^{2M}).

    Returns the sufficient statistics (``gamma`` (T, M, L), ``xi`` (M, L, L), ``Es`` (T, ML),
    ``Ess`` (ML, ML) = sum_t <s_t s_t^T>), ``log_likelihood`` = log p(Y), ``entropy`` H(p(s|Y)),
    and ``joint_gamma`` (T, L^M).
    """
    Y = _check_inputs(params, Y)
    m, l_, d = params.shape
    states = _joint_states(m, l_)
    phi = np.zeros((len(states), m * l_))                                      # one-hot decoding of joint states
    for c in range(m):
        phi[np.arange(len(states)), c * l_ + states[:, c]] = 1.0
    A = params.A[0]
    for c in range(1, m):
        A = np.kron(A, params.A[c])
    with np.errstate(divide="ignore"):                                          # log 0 = −inf: a state EM ruled out
        log_pi = sum(np.log(params.pi[c][states[:, c]]) for c in range(m))
    Wcat = np.concatenate(list(params.W), axis=1)                               # (D, ML)
    mu = phi @ Wcat.T                                                            # (L^M, D)
    log_e = _log_gauss_const(params.C) - 0.5 * (((Y[:, None, :] - mu[None]) ** 2) / params.C).sum(-1)
    g, xi_joint, loglik = forward_backward(log_pi, A, log_e)
    stats = {
        "joint_gamma": g,
        "gamma": (g @ phi).reshape(len(Y), m, l_),
        "xi": np.stack([phi[:, c * l_:(c + 1) * l_].T @ xi_joint @ phi[:, c * l_:(c + 1) * l_]
                        for c in range(m)]),
        "Es": g @ phi,
        "Ess": phi.T @ (g.sum(0)[:, None] * phi),
        "log_likelihood": loglik,
    }
    terms = expected_complete_loglik(params, Y, stats)
    stats["entropy"] = loglik - sum(terms.values())                            # H = log p(y) - E[log p(y, s)]
    return stats


def expected_complete_loglik(params: FHMMParams, Y: np.ndarray, stats: dict) -> dict:
    """The labelled terms E_q[log p(s_1)], E_q[log p(s_t|s_t-1)], E_q[log p(y|s)] of (FH.1, FH.3)."""
    m, l_, d = params.shape
    with np.errstate(divide="ignore"):
        log_pi, log_A = np.log(params.pi), np.log(params.A)
    with np.errstate(invalid="ignore"):                                         # 0 · log 0 = 0 (np.where picks it)
        e1 = float(np.sum(np.where(stats["gamma"][0] > 0, stats["gamma"][0] * log_pi, 0.0)))
        et = float(np.sum(np.where(stats["xi"] > 0, stats["xi"] * log_A, 0.0)))
    Wcat = np.concatenate(list(params.W), axis=1)
    Ci = 1.0 / params.C
    quad = ((Y ** 2) * Ci).sum() - 2 * np.sum((Y * Ci) * (stats["Es"] @ Wcat.T)) \
        + np.trace((Wcat.T * Ci) @ Wcat @ stats["Ess"])
    ey = len(Y) * _log_gauss_const(params.C) - 0.5 * float(quad)
    return {"E[log p(s_1)] (FH.1)": e1, "E[log p(s_t|s_t-1)] (FH.1)": et, "E[log p(y|s)] (FH.3)": ey}


def _mf_stats(gamma, xi):
    T, m, l_ = gamma.shape
    Es = gamma.reshape(T, m * l_)
    Ess = Es.T @ Es
    for c in range(m):
        blk = slice(c * l_, (c + 1) * l_)
        Ess[blk, blk] = np.diag(gamma[:, c].sum(0))                            # <s^m s^m^T> = diag(<s^m>)
    return {"gamma": gamma, "xi": xi, "Es": Es, "Ess": Ess}


def mean_field_posterior(params: FHMMParams, Y: np.ndarray, n_iter: int = 20, tol: float = 1e-8,
                         init_gamma: np.ndarray | None = None, seed: int = 0, *, n_init: int = 1,
                         betas=None) -> dict:
    """Structured mean-field E-step (G&J 12b): sweep the chains, each a forward-backward on h^m.

    Returns the statistics of [`exact_posterior`][varinf.classical.fhmm.exact_posterior] (without ``joint_gamma``), ``bound``
    (FH.1), ``entropy`` (FH.2) and ``bound_trace`` (the bound after every chain update:
    non-decreasing). Stops after ``n_iter`` sweeps or when a sweep raises the bound by < tol.
    ``n_init`` > 1: restarts from seeds seed, seed + 1, ... (the first from ``init_gamma`` if given),
    best bound kept (`_best_of_restarts`); ``betas``: deterministic-annealing sweeps first
    (`_structured_annealing`).
    """
    if _check_int(n_init, "n_init", 1) > 1:
        return _best_of_restarts(mean_field_posterior, params, Y, n_init, seed, init_gamma,
                                 n_iter=n_iter, tol=tol, betas=betas)
    Y = _check_inputs(params, Y)
    m, l_, d = params.shape
    T = len(Y)
    gamma = _initial_gamma(init_gamma, seed, T, m, l_)
    if betas is not None:
        gamma = _structured_annealing(params, Y, gamma, _check_betas(betas))
    xi = np.zeros((m, l_, l_))
    log_h = np.zeros((m, T, l_))
    log_z = np.zeros(m)
    Ci = 1.0 / params.C
    delta = np.einsum("mdl,d->ml", params.W ** 2, Ci)                          # diag(W_m^T C^-1 W_m)
    updated = np.zeros(m, dtype=bool)
    trace = []

    def bound():
        stats = _mf_stats(gamma, xi)
        terms = expected_complete_loglik(params, Y, stats)
        # H(q) (FH.2): only valid once every chain has been updated (q_m of HMM form)
        h = float(sum(log_z) - np.sum(gamma.transpose(1, 0, 2) * log_h)) \
            - terms["E[log p(s_1)] (FH.1)"] - terms["E[log p(s_t|s_t-1)] (FH.1)"]
        return stats, terms, h

    prev = -np.inf
    for _ in range(n_iter):
        for c in range(m):
            log_h[c] = chain_log_potential(Y, gamma, params.W, Ci, delta, c)       # (G&J 12b)
            g, xi[c], log_z[c] = forward_backward(np.log(params.pi[c]), params.A[c], log_h[c])
            gamma[:, c] = g
            updated[c] = True
            if updated.all():
                stats, terms, h = bound()
                trace.append(sum(terms.values()) + h)
        if trace[-1] - prev < tol:
            break
        prev = trace[-1]
    stats, terms, h = bound()
    stats.update(entropy=h, bound=sum(terms.values()) + h, bound_trace=trace)
    return stats


def chain_log_potential(Y, gamma, W, Ci, delta, m: int):
    """Expected-emission log-potential of chain m (G&J eq. 12b), numpy arrays or torch tensors:

        log h^m_t = W_m^T C^{-1} (y_t - sum_{n != m} W_n <s^n_t>) - 1/2 diag(W_m^T C^{-1} W_m)

    Y (T, D), gamma (T, M, L) = <s^n_t>, W (M, D, L), Ci (D,) = 1/C, delta (M, L) = diag(W_m^T C^-1 W_m).
    Returns (T, L). Shared by the structured (G&J 12b) and the fully factorised (FF.2) update.
    """
    resid = Y - sum(gamma[:, n] @ W[n].T for n in range(len(W)) if n != m)          # (T, D)
    return (resid * Ci) @ W[m] - 0.5 * delta[m]


def _initial_gamma(init_gamma, seed, T, m, l_):
    if init_gamma is None:
        return np.random.default_rng(seed).dirichlet(np.ones(l_), size=(T, m))          # (T, M, L)
    gamma = np.array(init_gamma, dtype=float)
    if gamma.shape != (T, m, l_) or not np.all(np.isfinite(gamma)) or np.any(gamma < 0):
        raise DataError(f"init_gamma has shape {gamma.shape} (or negative/non-finite entries); expected "
                        f"non-negative ({T}, {m}, {l_}) = (T, M, L) marginals.")
    return gamma / gamma.sum(-1, keepdims=True)


def _check_betas(betas) -> np.ndarray:
    b = np.asarray(betas, dtype=float)
    if b.ndim != 1 or len(b) == 0 or not np.all(np.isfinite(b)) or np.any(b <= 0) or np.any(b > 1) \
            or np.any(np.diff(b) < 0):
        raise ConfigError(f"betas {betas!r} is not allowed: give a non-empty non-decreasing sequence of inverse "
                          "temperatures in (0, 1].")
    return b


def _best_of_restarts(posterior_fn, params, Y, n_init, seed, init_gamma, **kwargs) -> dict:
    """Run ``posterior_fn`` from seeds seed, ..., seed + n_init - 1 (the first from ``init_gamma`` when given);
    return the run with the largest bound, with ``restart_bounds`` and ``restart_seeds`` of all runs."""
    runs = [posterior_fn(params, Y, init_gamma=init_gamma if i == 0 else None, seed=seed + i, **kwargs)
            for i in range(n_init)]
    best = max(runs, key=lambda r: r["bound"])
    return dict(best, restart_bounds=[r["bound"] for r in runs], restart_seeds=[seed + i for i in range(n_init)])


def _structured_annealing(params: FHMMParams, Y, gamma, betas) -> np.ndarray:
    """Deterministic annealing for the structured q: one sweep per beta of the coordinate maximiser of
    F_beta = beta E_q[log p(Y, S)] + H(q) over chain m,

        q_m(s^m) propto [ p_m(s^m) prod_t h^m_t(s^m_t) ]^beta
               = forward-backward on (beta log pi_m, A_m^beta, beta log h^m)        (G&J 12b at temperature 1/beta)

    (Ueda & Nakano 1998). Returns the marginals gamma (T, M, L) after the last beta.
    """
    gamma = gamma.copy()
    Ci = 1.0 / params.C
    delta = np.einsum("mdl,d->ml", params.W ** 2, Ci)                          # diag(W_m^T C^-1 W_m)
    for beta in betas:
        for c in range(params.shape[0]):
            log_h = chain_log_potential(Y, gamma, params.W, Ci, delta, c)       # (T, L)
            gamma[:, c] = forward_backward(beta * np.log(params.pi[c]), params.A[c] ** beta, beta * log_h)[0]
    return gamma


def _torch_model(params: FHMMParams) -> dict:
    """The parameters as float64 tensors: log pi (M, L), log A (M, L, L), W (M, D, L), Ci = 1/C (D,),
    delta = diag(W_m^T C^-1 W_m) (M, L), const = -D/2 log 2 pi - 1/2 sum_d log C_d."""
    t = lambda a: torch.as_tensor(np.asarray(a, dtype=float), dtype=torch.float64)   # noqa: E731
    with np.errstate(divide="ignore"):
        return {"log_pi": t(np.log(params.pi)), "log_A": t(np.log(params.A)), "W": t(params.W),
                "Ci": t(1.0 / params.C), "delta": t(np.einsum("mdl,d->ml", params.W ** 2, 1.0 / params.C)),
                "const": float(_log_gauss_const(params.C))}


def _times_log(q, log_p):
    """q * log p with 0 where q = 0 (the 0 log 0 = 0 convention; log p may be -inf)."""
    return torch.where(q > 0, q * log_p, 0.0)


def factorised_elbo_terms(params, Y, log_q) -> dict:
    """Labelled terms of the fully factorised bound (FF.3, FF.4), exact expectations, batched and differentiable.

    ``params``: [`FHMMParams`][varinf.classical.fhmm.FHMMParams] (or the dict of `_torch_model`); ``Y`` (..., T, D) and
    ``log_q`` (..., T, M, L) = log gamma^m_t(l) (log-probabilities over l) as float64 tensors or arrays.
    Returns a dict of (...) tensors; F = their sum <= log p(Y).
    """
    p = params if isinstance(params, dict) else _torch_model(params)
    Y = torch.as_tensor(Y, dtype=torch.float64)
    log_q = torch.as_tensor(log_q, dtype=torch.float64)
    q = log_q.exp()                                                                       # (..., T, M, L)
    e1 = _times_log(q[..., 0, :, :], p["log_pi"]).sum((-2, -1))                           # sum_ml gamma_1 log pi
    pair = q[..., :-1, :, :, None] * q[..., 1:, :, None, :]                               # (..., T-1, M, L, L)
    et = _times_log(pair, p["log_A"]).sum((-4, -3, -2, -1))                               # gamma_{t-1}^T log A gamma_t
    chain_mean = torch.einsum("mdl,...tml->...tmd", p["W"], q)                            # (..., T, M, D)
    resid = Y - chain_mean.sum(-2)                                                        # (..., T, D)
    var = (q * p["delta"]).sum((-3, -2, -1)) - (chain_mean ** 2 * p["Ci"]).sum((-3, -2, -1))
    ey = Y.shape[-2] * p["const"] - 0.5 * ((resid ** 2 * p["Ci"]).sum((-2, -1)) + var)
    return {"E[log p(s_1)] (FF.3)": e1,
            "E[log p(s_t|s_t-1)] (FF.3)": et,
            "E[log p(y|s)] (FF.4)": ey,
            "H(q) (FF.3)": -_times_log(q, log_q).sum((-3, -2, -1))}


def factorised_site_logits(p: dict, Y: torch.Tensor, q: torch.Tensor, m: int) -> torch.Tensor:
    """Unnormalised log q*(s^m_t = l) of the CAVI update (FF.2) for every t of chain m:

        [t = 1] log pi_m[l] + [t > 1] sum_k q^m_{t-1}(k) log A_m[k, l] + [t < T] sum_k log A_m[l, k] q^m_{t+1}(k)
        + log h^m_t(l)   (G&J 12b)

    p: `_torch_model`; Y (T, D); q (T, M, L). Returns (T, L).
    """
    logits = chain_log_potential(Y, q, p["W"], p["Ci"], p["delta"], m)                  # (T, L)
    logits[0] += p["log_pi"][m]
    logits[1:] += _times_log(q[:-1, m, :, None], p["log_A"][m]).sum(-2)                    # from s^m_{t-1}
    logits[:-1] += _times_log(q[1:, m, None, :], p["log_A"][m]).sum(-1)                    # from s^m_{t+1}
    return logits


def factorised_cavi_update(p: dict, Y: torch.Tensor, log_q: torch.Tensor, m: int, parity: int,
                           beta: float = 1.0) -> None:
    """CAVI step (FF.2) for all sites (t, m) with t = parity (mod 2), in place on log_q (T, M, L):

        log q(s^m_t) <- log_softmax_l( beta * factorised_site_logits(...)[t] )

    These sites share no factor of p, so updating them together is an exact block coordinate step of
    F_beta = beta E_q[log p(Y, S)] + H(q) (beta = 1: the bound (FF.3)).
    """
    logits = factorised_site_logits(p, Y, log_q.exp(), m)
    log_q[parity::2, m] = torch.log_softmax(beta * logits[parity::2], -1)


def factorised_mean_field_posterior(params: FHMMParams, Y: np.ndarray, n_iter: int = 100, tol: float = 1e-8,
                                    init_gamma: np.ndarray | None = None, seed: int = 0, *, n_init: int = 1,
                                    betas=None) -> dict:
    """Fully factorised mean field q(S) = prod_t prod_m q(s^m_t) (FF.1) by CAVI (FF.2).

    One sweep updates every chain, even then odd time steps. ``betas``: one annealed sweep per inverse
    temperature first; then up to ``n_iter`` sweeps at beta = 1, stopping when a sweep raises the bound
    by < tol. ``n_init`` > 1: restarts from seeds seed, seed + 1, ..., best bound kept.
    Returns the statistics of [`exact_posterior`][varinf.classical.fhmm.exact_posterior] (``gamma``, ``xi`` = sum_t gamma_{t-1} gamma_t^T
    per chain, ``Es``, ``Ess``), ``log_q``, ``bound`` (FF.3), ``terms`` (its labelled parts),
    ``entropy`` and ``bound_trace`` (after every chain at beta = 1: non-decreasing).
    """
    if _check_int(n_init, "n_init", 1) > 1:
        return _best_of_restarts(factorised_mean_field_posterior, params, Y, n_init, seed, init_gamma,
                                 n_iter=n_iter, tol=tol, betas=betas)
    Y = _check_inputs(params, Y)
    m, l_, d = params.shape
    T = len(Y)
    gamma = _initial_gamma(init_gamma, seed, T, m, l_)
    p = _torch_model(params)
    y = torch.as_tensor(Y, dtype=torch.float64)
    log_q = torch.log(torch.as_tensor(gamma).clamp_min(1e-300))                            # (T, M, L)
    schedule = [] if betas is None else list(_check_betas(betas))
    trace = []

    def bound():
        return float(sum(factorised_elbo_terms(p, y, log_q).values()))

    for beta in schedule + [1.0] * _check_int(n_iter, "n_iter", 1):
        prev = trace[-1] if trace else -np.inf
        for c in range(m):
            factorised_cavi_update(p, y, log_q, c, 0, beta)
            factorised_cavi_update(p, y, log_q, c, 1, beta)
            if beta == 1.0:
                trace.append(bound())
        if beta == 1.0 and trace[-1] - prev < tol:
            break
    terms = {k: float(v) for k, v in factorised_elbo_terms(p, y, log_q).items()}
    gamma = log_q.exp().numpy()
    stats = _mf_stats(gamma, np.einsum("tmk,tml->mkl", gamma[:-1], gamma[1:]))
    stats.update(log_q=log_q.numpy(), terms=terms, entropy=terms["H(q) (FF.3)"], bound=sum(terms.values()),
                 bound_trace=trace)
    return stats


class FactorialHMM(CoordinateAscent):
    """EM for the factorial HMM with an exact or mean-field E-step (G&J §3, Appendix A).

    Parameters: ``n_chains`` M, ``n_states`` L, ``inference`` ("exact", "mean_field" = structured, or
    "factorised" = fully factorised (FF.1)), ``n_mf_iter`` sweeps per mean-field E-step (warm-started from
    the previous one), ``n_init`` starts per mean-field E-step (the warm start and n_init - 1 random ones,
    best bound kept, so the EM bound still never drops),
    ``min_covar`` floor on C, ``tol``/``max_iter``/``random_state`` as every CoordinateAscent.
    ``fit(Y)`` takes one sequence Y (T, D). After fit: ``params_`` ([`FHMMParams`][varinf.classical.fhmm.FHMMParams]),
    ``posterior_`` (the last E-step's statistics), ``lower_bound_`` (bound per time step),
    ``bound_trace_`` (after every E- and M-step: non-decreasing).
    """

    def __init__(self, n_chains: int = 2, n_states: int = 2, *, inference: str = "exact", n_mf_iter: int = 10,
                 n_init: int = 1, min_covar: float = 1e-6, tol: float = 1e-6, max_iter: int = 100, random_state=None,
                 verbose: int = 0):
        super().__init__(tol=tol, max_iter=max_iter, random_state=random_state, verbose=verbose)
        self.n_chains = n_chains
        self.n_states = n_states
        self.inference = inference
        self.n_mf_iter = n_mf_iter
        self.n_init = n_init
        self.min_covar = min_covar

    def _min_samples(self):
        return 2

    def _check_params(self, X):
        _check_int(self.n_chains, "n_chains", 1)
        _check_int(self.n_states, "n_states", 1)
        _check_int(self.n_mf_iter, "n_mf_iter", 1)
        _check_int(self.n_init, "n_init", 1)
        _check_real(self.min_covar, "min_covar", 0.0)
        if self.inference not in ("exact", "mean_field", "factorised"):
            raise ConfigError(f"inference {self.inference!r} is not one of exact, mean_field, factorised.")
        if self.inference == "exact" and self.n_states ** self.n_chains > 4096:
            raise ConfigError(f"exact inference needs L^M = {self.n_states ** self.n_chains} joint states "
                              "(> 4096); use inference='mean_field'.")

    def _initialize(self, Y, random_state):
        m, l_, d = self.n_chains, self.n_states, Y.shape[1]
        pi = np.full((m, l_), 1.0 / l_)
        A = random_state.dirichlet(np.ones(l_), size=(m, l_)) * 0.2 + 0.8 * np.eye(l_)
        W = random_state.normal(size=(m, d, l_)) * Y.std(0)[None, :, None] / math.sqrt(m) \
            + Y.mean(0)[None, :, None] / m
        self.params_ = FHMMParams(pi, A, W, Y.var(0) + self.min_covar)
        self.posterior_ = None
        self._mf_seed = int(random_state.randint(2 ** 31))

    def _e_step(self, Y):
        if self.inference == "exact":
            self.posterior_ = exact_posterior(self.params_, Y)
        else:
            init = None if self.posterior_ is None else self.posterior_["gamma"]
            posterior_fn = {"mean_field": mean_field_posterior,
                            "factorised": factorised_mean_field_posterior}[self.inference]
            self.posterior_ = posterior_fn(self.params_, Y, self.n_mf_iter, init_gamma=init, seed=self._mf_seed,
                                           n_init=self.n_init)

    def _m_step(self, Y):
        s = self.posterior_
        m, l_ = self.n_chains, self.n_states
        T, d = Y.shape
        Wcat = (Y.T @ s["Es"]) @ np.linalg.pinv(s["Ess"])                       # (D, ML)
        C = ((Y ** 2).sum(0) - np.einsum("dk,tk,td->d", Wcat, s["Es"], Y)) / T
        A = s["xi"] + 1e-300
        self.params_ = FHMMParams(s["gamma"][0] / s["gamma"][0].sum(-1, keepdims=True),
                                  A / A.sum(-1, keepdims=True),
                                  Wcat.reshape(d, m, l_).transpose(1, 0, 2).copy(),
                                  np.maximum(C, self.min_covar))

    def _blocks(self):
        return [("E-step", self._e_step), ("M-step", self._m_step)]

    def _bound_terms(self, Y):
        terms = expected_complete_loglik(self.params_, Y, self.posterior_)
        terms["H(q) (FH.2)"] = self.posterior_["entropy"]
        return terms

    def log_likelihood(self, Y) -> float:
        """Exact log p(Y) under the fitted parameters (forward-backward on L^M states)."""
        Y = self._validate(Y, name="Y")
        return exact_posterior(self.params_, Y)["log_likelihood"]


class FHMMInferenceNetwork(nn.Module):
    """Amortised fully factorised posterior q_phi(S | Y) = prod_t prod_m Cat(s^m_t; softmax(f_phi(Y)_{t, m}))
    (Eikema & Aziz, "Inference network for FHMMs"): a bidirectional GRU over the standardised y_{1:T}
    and a linear read-out of the (FF.1) logits at every t. ``forward(Y)`` maps (N, T, D) to log q (N, T, M, L),
    float64.
    """

    def __init__(self, n_outputs: int, n_chains: int, n_states: int, hidden: int = 32):
        super().__init__()
        self.n_chains, self.n_states = n_chains, n_states
        self.gru = nn.GRU(n_outputs, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, n_chains * n_states)
        self.register_buffer("y_mean", torch.zeros(n_outputs))
        self.register_buffer("y_std", torch.ones(n_outputs))

    def forward(self, Y: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(((Y - self.y_mean) / self.y_std).float())                             # (N, T, 2H)
        logits = self.head(h).double().reshape(*Y.shape[:-1], self.n_chains, self.n_states)  # (N, T, M, L)
        return torch.log_softmax(logits, -1)


def _check_sequences(params: FHMMParams, Y) -> torch.Tensor:
    Y = np.asarray(Y, dtype=float)
    if Y.ndim != 3 or Y.shape[1] < 2 or Y.shape[2] != params.shape[2] or not np.all(np.isfinite(Y)):
        raise DataError(f"Y has shape {Y.shape} (or non-finite entries); expected finite (N, T, D) sequences with "
                        f"T >= 2 and D = {params.shape[2]}.")
    return torch.as_tensor(Y, dtype=torch.float64)


def fit_fhmm_inference_network(params: FHMMParams, Y, *, hidden: int = 32, n_iter: int = 300, lr: float = 1e-2,
                               seed: int = 0) -> tuple[FHMMInferenceNetwork, list]:
    """Train [`FHMMInferenceNetwork`][varinf.classical.fhmm.FHMMInferenceNetwork] on sequences ``Y`` (N, T, D) of the FHMM ``params`` by Adam
    (full batch), maximising the mean exact fully factorised bound (FF.3) per time step,
    (1 / N T) sum_n F(q_phi(. | Y_n)): every expectation is in closed form, no sampling.

    Returns ``(net, trace)``, trace = (iteration, mean F per sequence) every 25 iterations and at the end.
    """
    params.validate()
    y = _check_sequences(params, Y)
    n_iter = _check_int(n_iter, "n_iter", 1)
    _check_int(hidden, "hidden", 1)
    _check_real(lr, "lr", 0.0, strict=True)
    m, l_, d = params.shape
    with torch.random.fork_rng(devices=[]):   # the initial weights from ``seed``; the caller's global RNG untouched
        torch.manual_seed(seed)
        net = FHMMInferenceNetwork(d, m, l_, hidden)
    net.y_mean.copy_(y.mean((0, 1)))
    net.y_std.copy_(y.std((0, 1)) + 1e-8)
    p = _torch_model(params)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    trace = []
    for it in range(n_iter):
        elbo = sum(factorised_elbo_terms(p, y, net(y)).values())                              # (N,)
        loss = -elbo.mean() / y.shape[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it % 25 == 0 or it == n_iter - 1:
            trace.append((it, elbo.mean().item()))
    return net, trace
