"""What the single-optimizer training methods share: the optimizer factory and one update rule."""

from __future__ import annotations

import torch

from varinf.config import TrainConfig


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam or RMSprop with the configured learning rate (seed 003 §7: RMSprop 3e-3, Adam 3e-4).

    Adam uses torch's fused kernel (one pass over all parameters; on CPU about 4x faster per
    step than the default multi-tensor path for the Table 1 network, see docs/RESULTS.md).
    With ``cfg.warmup_steps`` = W > 0 the learning rate rises linearly, lr·n/W at update n ≤ W
    (see :func:`add_linear_warmup`).
    """
    if cfg.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=cfg.lr, fused=True)
    else:
        optimizer = torch.optim.RMSprop(params, lr=cfg.lr)
    if cfg.warmup_steps:
        add_linear_warmup(optimizer, cfg.warmup_steps)
    return optimizer


def add_linear_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int) -> None:
    """Scale each parameter group's learning rate by min(1, n / W) at the optimizer's n-th update.

    Why: torch's RMSprop starts its mean square at 0, so its first update is lr·g/√(0.01 g²) ≈ 10·lr
    per weight; with the paper's RMSprop 3e-3 that first step throws GBVI's encoder log σ far off and
    training diverges (docs/RESULTS.md §5). A warm-up over the first W updates avoids it.
    n is read from the optimizer's own per-parameter ``step`` counter instead of a separate
    ``torch.optim.lr_scheduler``: the schedule is then a pure function of the optimizer state that the
    checkpoints already save, so ``--resume`` continues it exactly with nothing new to store.
    """
    base = [group["lr"] for group in optimizer.param_groups]

    def pre_step(opt, args, kwargs):
        for group, lr in zip(opt.param_groups, base):
            done = max((int(opt.state[p]["step"]) for p in group["params"] if "step" in opt.state.get(p, {})),
                       default=0)
            group["lr"] = lr * min(1.0, (done + 1) / warmup_steps)     # done + 1: the update about to be made

    optimizer.register_step_pre_hook(pre_step)


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
