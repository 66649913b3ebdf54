"""Exact inference by enumerating all 2^K states of a small binary-latent model (K ≤ 20).

For an SBN with a handful of latents every expectation over h is a finite sum, so

    log p(x)      = log Σ_h p(x, h)
    p(h|x)        = p(x, h) / p(x)
    L(x, θ, q)    = Σ_h q(h|x) [log p(x, h) − log q(h|x)]          (the ELBO, exactly)
    KL(q ‖ p(h|x)) = log p(x) − L(x, θ, q)

are computed in closed form. ``exact_elbo`` is differentiable, so autograd gives the exact
ELBO gradient in q's logits and in the model's parameters: the reference the Monte Carlo
gradient estimators (REINFORCE, NVIL, ST, ...) are checked against.
"""

from __future__ import annotations

import torch

from varinf.families import BERNOULLI

__all__ = ["all_binary", "exact_log_joint", "exact_log_marginal", "exact_posterior", "exact_elbo",
           "kl_to_posterior", "MAX_LATENTS"]

MAX_LATENTS = 20


def all_binary(k: int, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """All 2^K binary vectors as a (2^K, K) table; row i is the binary expansion of i (bit j = column j)."""
    if not 1 <= k <= MAX_LATENTS:
        raise ValueError(f"enumeration needs 1 <= K <= {MAX_LATENTS} latents, got {k}")
    idx = torch.arange(2 ** k, device=device)
    return ((idx[:, None] >> torch.arange(k, device=device)) & 1).to(dtype)


def _states(model, x: torch.Tensor) -> torch.Tensor:
    h = all_binary(model.latent_dim, x.dtype, x.device)                   # (2^K, K)
    return h[:, None, :].expand(-1, x.shape[0], -1)                      # (2^K, B, K)


def exact_log_joint(model, x: torch.Tensor) -> torch.Tensor:
    """log p(x, h) for every state h: (2^K, B)."""
    return model.log_joint(x, _states(model, x))


def exact_log_marginal(model, x: torch.Tensor) -> torch.Tensor:
    """log p(x) = log Σ_h p(x, h): (B,)."""
    return torch.logsumexp(exact_log_joint(model, x), dim=0)


def exact_posterior(model, x: torch.Tensor) -> torch.Tensor:
    """p(h|x) over the 2^K states (ordered as ``all_binary``): (B, 2^K), rows sum to 1."""
    return torch.softmax(exact_log_joint(model, x), dim=0).T


def exact_elbo(model, q_logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """L(x, θ, q) = Σ_h q(h|x) [log p(x, h) − log q(h|x)] with q factorial Bernoulli(σ(q_logits)): (B,).

    Differentiable in ``q_logits`` and in the model's parameters (an exact gradient).
    """
    h = _states(model, x)
    log_q = BERNOULLI.log_prob((q_logits,), h)                      # (2^K, B)
    return (log_q.exp() * (model.log_joint(x, h) - log_q)).sum(0)


def kl_to_posterior(q_logits: torch.Tensor, model, x: torch.Tensor) -> torch.Tensor:
    """KL(q(h|x) ‖ p(h|x)) = log p(x) − L(x, θ, q) ≥ 0: (B,)."""
    return exact_log_marginal(model, x) - exact_elbo(model, q_logits, x)
