"""Auto-encoding variational Bayes: the VAE's joint training of encoder and decoder.

Kingma & Welling (2014), Algorithm 1; Han §III-D and Patlan §IV. One gradient step on θ (decoder)
and φ (encoder) together, ascending the SGVB estimate of the ELBO averaged over a minibatch:

    θ, φ ← θ, φ + η ∇_{θ,φ} (1/B) Σ_i L̂(x⁽ⁱ⁾),   L̂ = SGVB-A or SGVB-B (varinf.objectives).
"""

from __future__ import annotations

import torch

from varinf.errors import ConfigError
from varinf.contract import posterior
from varinf.infer._base import Losses, Method
from varinf.objectives import sgvb_a, sgvb_b

__all__ = ["AEVB", "ESTIMATOR_FUNCTIONS"]

ESTIMATOR_FUNCTIONS = {"A": sgvb_a, "B": sgvb_b}


class AEVB(Method):
    """Training method ``vae``: maximise the SGVB bound in encoder and decoder parameters jointly."""

    name = "vae"
    families = ("gaussian",)
    validation_description = "SGVB bound of the amortised encoder q_phi"

    def __init__(self, model, estimator: str = "B", samples: int = 1):
        super().__init__(model)
        if estimator not in ESTIMATOR_FUNCTIONS:
            raise ConfigError(f"estimator must be one of {sorted(ESTIMATOR_FUNCTIONS)}, got {estimator!r}")
        self.estimator, self.samples = ESTIMATOR_FUNCTIONS[estimator], samples

    def objective(self, x: torch.Tensor, generator: torch.Generator, num_samples: int) -> torch.Tensor:
        """The SGVB bound L̂(x⁽ⁱ⁾) of the encoder's q_φ(z|x), shape (B,)."""
        q = posterior(self.model, x)                                                 # q_φ(z|x)
        return self.estimator(self.model, q, x, num_samples, generator)

    def losses(self, x, generator):
        bound = self.objective(x, generator, self.samples)
        loss = -bound.mean()
        return Losses({"generative": loss, "inference": loss}, bound.detach())

    @torch.no_grad()
    def validation_bound(self, x, num_samples, generator):
        """Per-datapoint SGVB bound of the amortised q on held-out data, shape (B,)."""
        return self.objective(x, generator, num_samples)
