"""Exact inference by enumerating all 2^K states of a small binary-latent model (K ≤ 20).

For an SBN with a handful of latents every expectation over h is a finite sum, so

    log p(x)      = log Σ_h p(x, h)
    p(h|x)        = p(x, h) / p(x)
    L(x, θ, q)    = Σ_h q(h|x) [log p(x, h) − log q(h|x)]          (the ELBO, exactly)
    KL(q ‖ p(h|x)) = log p(x) − L(x, θ, q)

are computed in closed form, for one- and multi-layer SBNs (h is every layer's units together).
``exact_elbo`` is differentiable, so autograd gives the exact
ELBO gradient in q's logits and in the model's parameters: the reference the Monte Carlo
gradient estimators (REINFORCE, NVIL, ST, ...) are checked against.
"""

from __future__ import annotations

import math

import torch

from varinf.families import BERNOULLI

__all__ = ["all_binary", "exact_log_joint", "exact_log_marginal", "exact_posterior", "exact_elbo",
           "exact_encoder_elbo", "exact_iwae_bound", "kl_to_posterior", "MAX_LATENTS", "MAX_TUPLES"]

MAX_LATENTS = 20
MAX_TUPLES = 2 ** 20          # exact_iwae_bound sums over (2^K)^k tuples of states


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


def exact_encoder_elbo(model, x: torch.Tensor) -> torch.Tensor:
    """L(x, θ, q_φ) = Σ_h q_φ(h|x) [log p(x, h) − log q_φ(h|x)] with the model's own encoder q_φ: (B,).

    q_φ is ``model.family``'s: factorial for a one-layer SBN (then equal to ``exact_elbo`` at the encoder's
    logits), layer by layer for a deep SBN (``varinf.families.LayeredBernoulli``). Differentiable in θ and φ:
    autograd gives the exact ELBO gradient the estimators are checked against.
    """
    h = _states(model, x)                                                  # (2^K, B, K)
    log_q = model.family.log_prob(model.encode(x), h)                      # (2^K, B)
    return (log_q.exp() * (model.log_joint(x, h) - log_q)).sum(0)


def exact_iwae_bound(model, x: torch.Tensor, k: int) -> torch.Tensor:
    """L_k(x) = E_{h⁽¹⁾…h⁽ᵏ⁾ ~ q_φ} log (1/k) Σ_i p(x, h⁽ⁱ⁾)/q_φ(h⁽ⁱ⁾|x) by summing over all (2^K)^k tuples: (B,).

    Burda et al. (2016) Eq. 8 / the k-sample objective of Mnih & Rezende (2016), exactly, with the
    model's encoder q_φ; differentiable in θ and φ (the exact gradient VIMCO estimates). L_1 is the ELBO.
    """
    n = 2 ** model.latent_dim
    if k < 1 or n ** k > MAX_TUPLES:
        raise ValueError(f"exact_iwae_bound sums over (2^K)^k = {n}^{k} tuples; at most {MAX_TUPLES} allowed")
    h = _states(model, x)                                                  # (2^K, B, K)
    log_q = model.family.log_prob(model.encode(x), h)                      # (2^K, B)
    log_w = model.log_joint(x, h) - log_q                                  # (2^K, B)
    idx = torch.cartesian_prod(*[torch.arange(n, device=x.device)] * k).reshape(-1, k)   # (n^k, k)
    tuple_log_q = log_q[idx].sum(1)                                        # log Π_i q(h⁽ⁱ⁾)   (n^k, B)
    tuple_bound = torch.logsumexp(log_w[idx], dim=1) - math.log(k)         # log (1/k) Σ_i w_i (n^k, B)
    return (tuple_log_q.exp() * tuple_bound).sum(0)
