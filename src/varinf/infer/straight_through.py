"""Straight-through training of a binary-latent model (Hjelm et al. 2015 Eq. 8 as an amortised loss).

Forward pass with real samples h ~ Bernoulli(σ(ℓ_φ(x))); the gradient of log p(x|h) with respect
to h is passed straight to the logits ℓ (Eq. 8), then back-propagated into φ
(``varinf.objectives.straight_through_objective``, the same function STVI's refiner ascends).
The prior and entropy terms are exact. The value is an unbiased ELBO estimate; the encoder
gradient is biased.
"""

from __future__ import annotations

from varinf.contract import posterior
from varinf.infer._base import Losses, Method
from varinf.objectives import straight_through_objective

__all__ = ["StraightThrough"]


class StraightThrough(Method):
    """Training method ``straight-through``: ascend Eq. 8's surrogate with ``samples`` draws per datapoint."""

    name = "straight-through"
    families = ("bernoulli",)

    def __init__(self, model, samples: int = 1):
        super().__init__(model)
        self.samples = samples

    def losses(self, x, generator):
        objective = straight_through_objective(self.model, posterior(self.model, x), x, self.samples, generator)   # (B,)
        loss = -objective.mean()
        return Losses({"generative": loss, "inference": loss}, objective.detach())
