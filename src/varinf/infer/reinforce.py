"""Plain REINFORCE for an SBN: the score-function ELBO gradient with no variance reduction.

    ∇_φ L ≈ (1/S) Σ_s (log p(x, h_s) − log q(h_s|x)) ∇_φ log q(h_s|x),   h_s ~ q_φ(h|x),
    ∇_θ L ≈ (1/S) Σ_s ∇_θ log p(x, h_s)

(``varinf.objectives.score_function_surrogate`` with no baseline). Unbiased, and the naive
reference the other binary-latent methods are compared with.
"""

from __future__ import annotations

import torch

from varinf.infer._base import SurrogateAscent
from varinf.models.sbn import encoder_elbo
from varinf.objectives import score_function_surrogate

__all__ = ["Reinforce", "reinforce_surrogate"]

reinforce_surrogate = score_function_surrogate


class Reinforce(SurrogateAscent):
    """Training method ``reinforce``: score-function gradient, ``samples`` draws per datapoint."""

    name = "reinforce"
    validation_description = "Monte Carlo ELBO of the amortised encoder q_phi"

    def objective(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        q = self.model.q(*self.model.encode(x))
        return reinforce_surrogate(self.model, q, x, self.samples, generator)

    def validation_bound(self, x: torch.Tensor, num_samples: int, generator: torch.Generator) -> torch.Tensor:
        return encoder_elbo(self.model, x, num_samples, generator)
