"""Wake-sleep (Hinton, Dayan, Frey & Neal 1995) for an SBN.

    wake   h ~ q_φ(h|x) for the data x;        θ ← θ + η ∇_θ log p_θ(x, h)
    sleep  (h, x) ~ p_θ(h) p_θ(x|h), B pairs;  φ ← φ + η ∇_φ log q_φ(h|x)

The sleep phase fits q to the model's own "dreams": it minimises KL(p(h|x) ‖ q(h|x)) on
x ~ p(x), not the ELBO's KL(q ‖ p). θ and φ have their own optimizers. ``step`` returns
the ELBO estimate of the batch from the wake samples (for logging).
"""

from __future__ import annotations

import torch

from varinf.config import TrainConfig
from varinf.infer._base import make_optimizer
from varinf.models.sbn import encoder_elbo
from varinf.sampling import draw

__all__ = ["WakeSleep", "wake_objective", "sleep_objective"]


def wake_objective(model, x: torch.Tensor, num_samples: int, generator: torch.Generator | None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(1/S) Σ_s log p_θ(x, h_s), h_s ~ q_φ (no gradient to φ), and the ELBO estimate: two (B,) tensors."""
    with torch.no_grad():
        q = model.q(*model.encode(x))
        h = draw(q, num_samples, generator)
        log_q = q.log_prob(h)
    log_joint = model.log_joint(x, h)
    return log_joint.mean(0), (log_joint.detach() - log_q).mean(0)


def sleep_objective(model, num: int, generator: torch.Generator | None) -> torch.Tensor:
    """log q_φ(h|x) on ``num`` ancestral samples (h, x) ~ p_θ: (num,)."""
    h, x = model.sample_joint(num, generator)
    return model.q(*model.encode(x)).log_prob(h)


class WakeSleep:
    """Training method ``wake-sleep``: a wake step on θ, then a sleep step on φ, per minibatch."""

    name = "wake-sleep"
    validation_description = "Monte Carlo ELBO of the amortised encoder q_phi"

    def __init__(self, model, cfg: TrainConfig):
        self.model, self.samples = model, cfg.samples
        self.generative_optimizer = make_optimizer(model.generative_parameters(), cfg)
        self.inference_optimizer = make_optimizer(model.inference_parameters(), cfg)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generative": self.generative_optimizer, "inference": self.inference_optimizer}

    def step(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        wake, bound = wake_objective(self.model, x, self.samples, generator)
        self.generative_optimizer.zero_grad(set_to_none=True)
        (-wake.mean()).backward()
        self.generative_optimizer.step()
        sleep = sleep_objective(self.model, x.shape[0], generator)
        self.inference_optimizer.zero_grad(set_to_none=True)
        (-sleep.mean()).backward()
        self.inference_optimizer.step()
        return bound.mean().detach()

    def validation_bound(self, x: torch.Tensor, num_samples: int, generator: torch.Generator) -> torch.Tensor:
        return encoder_elbo(self.model, x, num_samples, generator)
