"""Factorial hidden Markov model: exact and mean-field (independent chains) inference, EM learning.

Seed 004 ("Factorial HMMs", "Original FHMM Inference", "Mean field FHMM Inference");
Ghahramani & Jordan (1996/1997), "Factorial hidden Markov models" (G&J). M chains of L
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

*EM* (G&J Appendix A) alternates either E-step with the M-step
W = (sum_t y_t <s_t>^T)(sum_t <s_t s_t^T>)^+, C = diag(1/T sum_t y_t y_t^T - W <s_t> y_t^T / T),
pi_m = <s^m_1>, A_m propto sum_t <s^m_{t-1} s^m_t^T>. :class:`FactorialHMM` runs it on the
shared :class:`~varinf.classical._base.CoordinateAscent` loop (blocks "E-step", "M-step").
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from varinf.errors import ConfigError, DataError

from ._base import CoordinateAscent, _check_int, _check_real, check_data

__all__ = ["FHMMParams", "FactorialHMM", "forward_backward", "exact_posterior", "mean_field_posterior",
           "expected_complete_loglik", "sample_fhmm"]


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
                         init_gamma: np.ndarray | None = None, seed: int = 0) -> dict:
    """Structured mean-field E-step (G&J 12b): sweep the chains, each a forward-backward on h^m.

    Returns the statistics of :func:`exact_posterior` (without ``joint_gamma``), ``bound``
    (FH.1), ``entropy`` (FH.2) and ``bound_trace`` (the bound after every chain update:
    non-decreasing). Stops after ``n_iter`` sweeps or when a sweep raises the bound by < tol.
    """
    Y = _check_inputs(params, Y)
    m, l_, d = params.shape
    T = len(Y)
    if init_gamma is None:
        gamma = np.random.default_rng(seed).dirichlet(np.ones(l_), size=(T, m))
    else:
        gamma = np.array(init_gamma, dtype=float)
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
            pred = np.einsum("mdl,tml->td", params.W, gamma) - gamma[:, c] @ params.W[c].T   # sum_{n != m}
            log_h[c] = ((Y - pred) * Ci) @ params.W[c] - 0.5 * delta[c]            # (G&J 12b)
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


class FactorialHMM(CoordinateAscent):
    """EM for the factorial HMM with an exact or mean-field E-step (G&J §3, Appendix A).

    Parameters: ``n_chains`` M, ``n_states`` L, ``inference`` ("exact" or "mean_field"),
    ``n_mf_iter`` sweeps per mean-field E-step (warm-started from the previous one),
    ``min_covar`` floor on C, ``tol``/``max_iter``/``random_state`` as every CoordinateAscent.
    ``fit(Y)`` takes one sequence Y (T, D). After fit: ``params_`` (:class:`FHMMParams`),
    ``posterior_`` (the last E-step's statistics), ``lower_bound_`` (bound per time step),
    ``bound_trace_`` (after every E- and M-step: non-decreasing).
    """

    def __init__(self, n_chains: int = 2, n_states: int = 2, *, inference: str = "exact", n_mf_iter: int = 10,
                 min_covar: float = 1e-6, tol: float = 1e-6, max_iter: int = 100, random_state=None,
                 verbose: int = 0):
        super().__init__(tol=tol, max_iter=max_iter, random_state=random_state, verbose=verbose)
        self.n_chains = n_chains
        self.n_states = n_states
        self.inference = inference
        self.n_mf_iter = n_mf_iter
        self.min_covar = min_covar

    def _min_samples(self):
        return 2

    def _check_params(self, X):
        _check_int(self.n_chains, "n_chains", 1)
        _check_int(self.n_states, "n_states", 1)
        _check_int(self.n_mf_iter, "n_mf_iter", 1)
        _check_real(self.min_covar, "min_covar", 0.0)
        if self.inference not in ("exact", "mean_field"):
            raise ConfigError(f"inference {self.inference!r} is not one of exact, mean_field.")
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
            self.posterior_ = mean_field_posterior(self.params_, Y, self.n_mf_iter, init_gamma=init,
                                                   seed=self._mf_seed)

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
