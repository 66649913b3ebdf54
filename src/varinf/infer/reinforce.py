"""Plain REINFORCE for an SBN: the score-function ELBO gradient with no variance reduction.

    ∇_φ L ≈ (1/S) Σ_s (log p(x, h_s) − log q(h_s|x)) ∇_φ log q(h_s|x),   h_s ~ q_φ(h|x),
    ∇_θ L ≈ (1/S) Σ_s ∇_θ log p(x, h_s)

(``varinf.objectives.score_function_surrogate`` with no baseline). Unbiased, and the naive
reference the other binary-latent methods are compared with.
"""

from __future__ import annotations

import torch

from varinf.config import TrainConfig
from varinf.infer.aevb import make_optimizer
from varinf.models.sbn import encoder_elbo
from varinf.objectives import score_function_surrogate

__all__ = ["Reinforce", "reinforce_surrogate"]

reinforce_surrogate = score_function_surrogate


class Reinforce:
    """Training method ``reinforce``: score-function gradient, ``samples`` draws per datapoint."""

    name = "reinforce"
    validation_description = "Monte Carlo ELBO of the amortised encoder q_phi"

    def __init__(self, model, cfg: TrainConfig):
        self.model, self.samples = model, cfg.samples
        self.optimizer = make_optimizer(model.parameters(), cfg)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self.optimizer}

    def step(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        q = self.model.q(*self.model.encode(x))
        bound = reinforce_surrogate(self.model, q, x, self.samples, generator).mean()
        self.optimizer.zero_grad(set_to_none=True)
        (-bound).backward()
        self.optimizer.step()
        return bound.detach()

    def validation_bound(self, x: torch.Tensor, num_samples: int, generator: torch.Generator) -> torch.Tensor:
        return encoder_elbo(self.model, x, num_samples, generator)
