"""Iterative refinement of a diagonal-Gaussian approximate posterior (seed 003 §2–3, Eqs. 3–5).

Given the encoder's variational parameters z₀ = (μ₀, log σ₀) for a batch x, take T gradient
steps on the per-datapoint bound with respect to z only (Eq. 4):

    z_t = z_{t−1} + γ ∇_z L(x, z_{t−1}),

    L(x, z) = (1/N) Σ_n log p(x, h⁽ⁿ⁾) + H(q̃_z),   h⁽ⁿ⁾ = μ + σ ⊙ ε⁽ⁿ⁾,  ε⁽ⁿ⁾ ~ N(0, I)   (Eq. 5).

Which estimator of the bound. Eq. 3 writes the entropy term as the sampled −log q̃(h⁽ⁿ⁾);
here it is the closed-form Gaussian entropy H = K/2 (1 + log 2π) + Σ_k log σ_k. For a
diagonal Gaussian the two have *the same gradient* in (μ, log σ) for every ε
(−log q̃(μ + σε) = Σ log σ + ½‖ε‖² + const, and ½‖ε‖² does not depend on z once ε is
drawn), so the refinement steps are exactly those of Eq. 4; only the reported value of
the bound has lower variance.

Batching. The steps ascend Σ_i L(x⁽ⁱ⁾, z⁽ⁱ⁾), the *sum* over the batch: datapoint i's
parameters enter only its own term, so each gets exactly its own gradient, with one
forward and one backward pass for the whole batch per step (no Python loop over
datapoints). Refining a batch therefore equals refining each datapoint alone with the
same noise (tested).

The model's parameters receive no gradient: the gradient is taken with
``torch.autograd.grad`` with respect to (μ, log σ) only, which neither writes ``.grad``
nor computes the weight gradients. With ``create_graph=True`` the steps stay in the
autograd graph, so the refined parameters (and any bound computed from them) can be
differentiated with respect to whatever produced z₀ — the encoder φ in semi-amortised
training (Kim et al. 2018) — and with respect to the model's parameters.

Step rules: :class:`GradientStep` (plain ascent, Eq. 4, as in the paper) and
:class:`AdamStep` (a per-parameter adaptive step à la Adam, an option beyond the paper).
Both are written without in-place updates so that ``create_graph`` can differentiate
through them.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
from torch import distributions as D

__all__ = ["refine", "gaussian_bound", "gaussian_entropy", "gaussian_kl", "diag_gaussian", "Refined",
           "GradientStep", "AdamStep", "STEP_RULES", "make_step_rule"]

LogJoint = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]   # (x (B, D), h (S, B, K)) -> (S, B)


def diag_gaussian(mu: torch.Tensor, log_std: torch.Tensor) -> D.Distribution:
    """q̃(h|x; z) = N(μ, diag σ²) as torch.distributions: batch (B,), event (K,)."""
    return D.Independent(D.Normal(mu, log_std.exp(), validate_args=False), 1, validate_args=False)


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """H(N(μ, diag σ²)) = K/2 (1 + log 2π) + Σ_k log σ_k, shape (B,)."""
    k = log_std.shape[-1]
    return 0.5 * k * (1.0 + math.log(2 * math.pi)) + log_std.sum(-1)


def gaussian_kl(mu_p: torch.Tensor, log_std_p: torch.Tensor, mu_q: torch.Tensor, log_std_q: torch.Tensor
                ) -> torch.Tensor:
    """KL(N(μ_p, σ_p²) ‖ N(μ_q, σ_q²)) for diagonal Gaussians in closed form, shape (B,).

        KL = Σ_k [ log σ_q − log σ_p + (σ_p² + (μ_p − μ_q)²) / (2 σ_q²) − ½ ]

    (``torch.distributions.kl_divergence``'s Normal–Normal rule, summed over the event.)
    Seed 003 Eq. 6 with p = q̃ (the refined posterior) and q = q_φ (the encoder).
    """
    return D.kl_divergence(diag_gaussian(mu_p, log_std_p), diag_gaussian(mu_q, log_std_q))


def gaussian_bound(log_joint: LogJoint, x: torch.Tensor, mu: torch.Tensor, log_std: torch.Tensor,
                   num_samples: int = 1, generator: torch.Generator | None = None,
                   noise: torch.Tensor | None = None) -> torch.Tensor:
    """Per-datapoint bound (1/N) Σ_n log p(x, μ + σ ⊙ ε⁽ⁿ⁾) + H(q̃), shape (B,).

    ``noise`` (N, B, K) replaces the draw of ε from ``generator`` (common random numbers).
    """
    if noise is None:
        noise = torch.randn((num_samples, *mu.shape), generator=generator, dtype=mu.dtype, device=mu.device)
    h = mu + log_std.exp() * noise                                          # (N, B, K), Eq. 5
    return log_joint(x, h).mean(0) + gaussian_entropy(log_std)


class GradientStep:
    """Plain gradient ascent z ← z + γ ∇_z L (seed 003 Eq. 4)."""

    name = "sgd"

    def __init__(self, rate: float):
        self.rate = rate

    def init(self, params: tuple[torch.Tensor, ...]) -> tuple:
        return ()

    def __call__(self, params, grads, state, t: int):
        return tuple(p + self.rate * g for p, g in zip(params, grads)), state


class AdamStep:
    """Adaptive per-parameter ascent (Adam, Kingma & Ba 2015) on the variational parameters.

        m ← β₁ m + (1 − β₁) g,  v ← β₂ v + (1 − β₂) g²,
        z ← z + γ m̂ / (√v̂ + ε),  m̂ = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ).

    Each datapoint's state is its own (elementwise), so batching stays exact.
    """

    name = "adam"

    def __init__(self, rate: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.rate, self.betas, self.eps = rate, betas, eps

    def init(self, params):
        return tuple((torch.zeros_like(p), torch.zeros_like(p)) for p in params)

    def __call__(self, params, grads, state, t: int):
        b1, b2 = self.betas
        new_params, new_state = [], []
        for p, g, (m, v) in zip(params, grads, state):
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
            new_params.append(p + self.rate * m_hat / (v_hat.sqrt() + self.eps))
            new_state.append((m, v))
        return tuple(new_params), tuple(new_state)


STEP_RULES = {GradientStep.name: GradientStep, AdamStep.name: AdamStep}


def make_step_rule(name: str, rate: float):
    """The step rule called ``name`` ("sgd" or "adam") with inference rate γ = ``rate``."""
    try:
        return STEP_RULES[name](rate)
    except KeyError:
        raise ValueError(f"unknown refinement step rule {name!r}; choose one of {sorted(STEP_RULES)}") from None


class Refined(NamedTuple):
    """Result of :func:`refine`: refined (μ, log σ), each (B, K), and the bound trace (T+1, B) or None."""

    mu: torch.Tensor
    log_std: torch.Tensor
    trace: torch.Tensor | None


def refine(log_joint: LogJoint, x: torch.Tensor, mu0: torch.Tensor, log_std0: torch.Tensor, *, steps: int,
           rate: float = 1e-3, num_samples: int = 1, generator: torch.Generator | None = None,
           step_rule: str | GradientStep | AdamStep = "sgd", return_trace: bool = False,
           create_graph: bool = False, noise: torch.Tensor | None = None) -> Refined:
    """T steps of gradient ascent on the bound in the variational parameters only (seed 003 Eq. 4).

    Arguments
        log_joint   (x (B, D), h (S, B, K)) -> log p(x, h) (S, B), e.g. ``model.log_joint``
        x           data (B, D)
        mu0, log_std0   initial variational parameters z₀ (B, K), e.g. the encoder's output
        steps       T ≥ 0
        rate        inference rate γ (the step size for ``"sgd"``, the learning rate for ``"adam"``)
        num_samples N reparameterised samples per step (Eq. 5)
        generator   source of all the noise ε (one (N, B, K) draw per step; one more for the
                    last trace entry)
        step_rule   "sgd" (Eq. 4), "adam", or a step-rule object
        return_trace    also return the bound of every z_t, t = 0..T, per datapoint: (T+1, B).
                    Entry t is estimated with the noise of step t (drawn before z_t is
                    updated, so it is unbiased for L(z_t)); entry T costs one extra forward.
        create_graph    keep the steps differentiable (semi-amortised training); otherwise
                    the returned (μ, log σ) are detached from z₀ and from the model
        noise       optional fixed noise (T [+1 with trace], N, B, K) instead of ``generator``

    Works under ``torch.no_grad()`` too (gradients are enabled inside). Returns
    :class:`Refined` (mu, log_std, trace).
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    rule = make_step_rule(step_rule, rate) if isinstance(step_rule, str) else step_rule
    if noise is not None and noise.shape[0] < steps + int(return_trace):
        raise ValueError(f"noise has {noise.shape[0]} steps; need {steps + int(return_trace)}")
    trace = []
    with torch.enable_grad():
        if create_graph:
            params = tuple(p if p.requires_grad else p.detach().requires_grad_() for p in (mu0, log_std0))
        else:
            params = (mu0.detach(), log_std0.detach())
        state = rule.init(params)
        for t in range(steps):
            if not create_graph:
                params = tuple(p.detach().requires_grad_() for p in params)
            bound = gaussian_bound(log_joint, x, *params, num_samples, generator,
                                   None if noise is None else noise[t])                     # (B,)
            grads = torch.autograd.grad(bound.sum(), params, create_graph=create_graph)  # ∇_z Σ_i L_i
            if return_trace:
                trace.append(bound.detach())
            params, state = rule(params, grads, state, t + 1)
            if not create_graph:
                state = tuple(tuple(s.detach() for s in pair) for pair in state)
        mu, log_std = params if create_graph else (params[0].detach(), params[1].detach())
    if return_trace:
        with torch.no_grad():
            trace.append(gaussian_bound(log_joint, x, mu.detach(), log_std.detach(), num_samples, generator,
                                        None if noise is None else noise[steps]))
    return Refined(mu, log_std, torch.stack(trace) if return_trace else None)
