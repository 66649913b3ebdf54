"""Auto-encoding variational Bayes: the VAE's joint training of encoder and decoder.

Kingma & Welling (2014), Algorithm 1; seeds 000 §III-D and 002 §IV. One gradient step
on θ (decoder) and φ (encoder) together, ascending the SGVB estimate of the ELBO
averaged over a minibatch:

    θ, φ ← θ, φ + η ∇_{θ,φ} (1/B) Σ_i L̂(x⁽ⁱ⁾),   L̂ = SGVB-A or SGVB-B (varinf.objectives).
"""

from __future__ import annotations

import torch

from varinf.config import TrainConfig
from varinf.objectives import sgvb_a, sgvb_b

ESTIMATOR_FUNCTIONS = {"A": sgvb_a, "B": sgvb_b}


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam or RMSprop with the configured learning rate (seed 003 §7: RMSprop 3e-3, Adam 3e-4).

    Adam uses torch's fused kernel (one pass over all parameters; on CPU about 4x faster per
    step than the default multi-tensor path for the Table 1 network, see docs/RESULTS.md).
    """
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, fused=True)
    return torch.optim.RMSprop(params, lr=cfg.lr)


class AEVB:
    """Training method ``vae``: maximise the SGVB bound in encoder and decoder parameters jointly."""

    name = "vae"

    def __init__(self, model, cfg: TrainConfig):
        self.model = model
        self.estimator = ESTIMATOR_FUNCTIONS[cfg.estimator]
        self.samples = cfg.samples
        self.optimizer = make_optimizer(model.parameters(), cfg)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self.optimizer}

    def step(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One minibatch update; returns the batch's mean bound (detached)."""
        q = self.model.q(*self.model.encode(x))                                     # q_φ(z|x)
        bound = self.estimator(self.model, q, x, self.samples, generator).mean()    # (1/B) Σ_i L̂(x⁽ⁱ⁾)
        self.optimizer.zero_grad(set_to_none=True)
        (-bound).backward()
        self.optimizer.step()
        return bound.detach()

    @torch.no_grad()
    def validation_bound(self, x: torch.Tensor, num_samples: int, generator: torch.Generator) -> torch.Tensor:
        """Per-datapoint bound of the amortised q on held-out data, shape (B,)."""
        q = self.model.q(*self.model.encode(x))
        return self.estimator(self.model, q, x, num_samples, generator)
