"""Straight-through training of an SBN (seed 003 Eq. 8; Bengio, Léonard & Courville 2013).

Variant: forward pass with a real sample h ~ Bernoulli(μ), μ = σ(ℓ(x)); backward pass
treats ∂h/∂μ as the identity (h_st = μ + (h − μ) detached), so the gradient reaches the
logits through the sigmoid's derivative ("ST with the sigmoid derivative", Bengio et al.
§4). The prior and entropy terms are exact (Eq. 8's second line):

    L̂ = (1/N) Σ_n log p(x | h_st⁽ⁿ⁾) + E_q[log p(h)] + H(q).

The value of L̂ is an unbiased ELBO estimate; its encoder gradient is biased.
"""

from __future__ import annotations

import torch

from varinf.infer._base import SurrogateAscent
from varinf.models.sbn import encoder_elbo, expected_log_prior

__all__ = ["StraightThrough", "straight_through_objective"]


def straight_through_objective(model, logits: torch.Tensor, x: torch.Tensor, num_samples: int = 1,
                               generator: torch.Generator | None = None) -> torch.Tensor:
    """Eq. 8's surrogate per datapoint: (B,). Value = ELBO estimate; gradient = the ST estimator."""
    mu = torch.sigmoid(logits)
    h = torch.bernoulli(mu.detach().expand(num_samples, *mu.shape), generator=generator)
    h_st = mu + (h - mu).detach()                                               # forward h, backward identity
    reconstruction = model.log_likelihood(x, h_st).mean(0)
    return reconstruction + expected_log_prior(model.prior_logits, mu) + model.q(logits).entropy()


class StraightThrough(SurrogateAscent):
    """Training method ``straight-through``: ascend Eq. 8 with ``samples`` draws per datapoint."""

    name = "straight-through"
    validation_description = "Monte Carlo ELBO of the amortised encoder q_phi"

    def objective(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return straight_through_objective(self.model, *self.model.encode(x), x, self.samples, generator)

    def validation_bound(self, x: torch.Tensor, num_samples: int, generator: torch.Generator) -> torch.Tensor:
        return encoder_elbo(self.model, x, num_samples, generator)
