"""What the single-optimizer training methods share: the optimizer factory and one update rule."""

from __future__ import annotations

import torch

from varinf.config import TrainConfig


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam or RMSprop with the configured learning rate (seed 003 §7: RMSprop 3e-3, Adam 3e-4).

    Adam uses torch's fused kernel (one pass over all parameters; on CPU about 4x faster per
    step than the default multi-tensor path for the Table 1 network, see docs/RESULTS.md).
    """
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, fused=True)
    return torch.optim.RMSprop(params, lr=cfg.lr)


class SurrogateAscent:
    """A method that ascends one per-datapoint objective in all model parameters with one optimizer.

    Subclasses set ``name`` and implement ``objective(x, generator) -> (B,)`` (a bound or a
    surrogate whose gradient is the method's estimator) and ``validation_bound``.
    """

    name = ""

    def __init__(self, model, cfg: TrainConfig):
        self.model, self.samples = model, cfg.samples
        self.optimizer = make_optimizer(model.parameters(), cfg)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self.optimizer}

    def objective(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def step(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One minibatch update ascending (1/B) Σ_i objective(x⁽ⁱ⁾); returns that mean (detached)."""
        objective = self.objective(x, generator).mean()
        self.optimizer.zero_grad(set_to_none=True)
        (-objective).backward()
        self.optimizer.step()
        return objective.detach()
