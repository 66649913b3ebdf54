"""Auto-encoding variational Bayes: the VAE's joint training of encoder and decoder.

Kingma & Welling (2014), Algorithm 1; seeds 000 §III-D and 002 §IV. One gradient step
on θ (decoder) and φ (encoder) together, ascending the SGVB estimate of the ELBO
averaged over a minibatch:

    θ, φ ← θ, φ + η ∇_{θ,φ} (1/B) Σ_i L̂(x⁽ⁱ⁾),   L̂ = SGVB-A or SGVB-B (varinf.objectives).
"""

from __future__ import annotations

import torch

from varinf.config import TrainConfig
from varinf.infer._base import SurrogateAscent, make_optimizer  # noqa: F401  (re-exported)
from varinf.objectives import sgvb_a, sgvb_b

__all__ = ["AEVB", "ESTIMATOR_FUNCTIONS", "make_optimizer"]

ESTIMATOR_FUNCTIONS = {"A": sgvb_a, "B": sgvb_b}


class AEVB(SurrogateAscent):
    """Training method ``vae``: maximise the SGVB bound in encoder and decoder parameters jointly."""

    name = "vae"

    def __init__(self, model, cfg: TrainConfig):
        super().__init__(model, cfg)
        self.estimator = ESTIMATOR_FUNCTIONS[cfg.estimator]

    def objective(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The SGVB bound L̂(x⁽ⁱ⁾) of the encoder's q_φ(z|x), shape (B,)."""
        q = self.model.q(*self.model.encode(x))                                     # q_φ(z|x)
        return self.estimator(self.model, q, x, self.samples, generator)

    @torch.no_grad()
    def validation_bound(self, x: torch.Tensor, num_samples: int, generator: torch.Generator) -> torch.Tensor:
        """Per-datapoint bound of the amortised q on held-out data, shape (B,)."""
        q = self.model.q(*self.model.encode(x))
        return self.estimator(self.model, q, x, num_samples, generator)
