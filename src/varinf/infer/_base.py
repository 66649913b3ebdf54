"""The small interface every training method meets, and the one update rule that applies it.

A method says what its losses are; the training loop owns optimizers, checkpoints and devices.

    method.parameter_groups()             {"generative": θ, "inference": φ[, "baseline": ψ]}
    method.losses(x, generator)           Losses(losses={group: scalar loss to minimise}, bound=(B,))
    method.validation_bound(x, S, gen)    (B,) per-datapoint bound on held-out data
    method.state_module()                 an nn.Module of extra state saved in checkpoints, or None

Every method on an amortised model has the groups "generative" (θ) and "inference" (φ), as the
model declares them (``varinf.contract.split_parameters``), so the checkpoint layout is the same
for every method; a method with parameters of its own (NVIL's baseline ψ) adds a group.
[`apply_losses`][varinf.infer._base.apply_losses] takes the gradient of each loss with respect to its group only (one
``autograd.grad`` per distinct loss tensor), then steps every group's optimizer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from varinf.contract import check_amortized, posterior, split_parameters
from varinf.errors import ConfigError
from varinf.objectives import entropy_bound

__all__ = ["Method", "Losses", "apply_losses", "make_optimizer", "add_linear_warmup", "make_optimizers",
           "OPTIMIZERS"]

OPTIMIZERS = ("adam", "rmsprop")


@dataclass
class Losses:
    """What one minibatch step of a method produces.

    ``losses`` maps a parameter group to the scalar it minimises (the same tensor may serve several
    groups: one backward pass then covers them); ``bound`` is the per-datapoint bound (B,) the
    method reports for the batch, detached.
    """

    losses: dict[str, torch.Tensor]
    bound: torch.Tensor


class Method:
    """Base of the training methods: the model's θ/φ groups and the encoder's validation bound."""

    name = ""
    families: tuple[str, ...] = ("gaussian", "bernoulli")      # latent families the method can train
    validation_description = "Monte Carlo ELBO of the amortised encoder q_phi"

    def __init__(self, model):
        check_amortized(model)
        if model.family.name not in self.families:
            raise ConfigError(f"method {self.name} trains {' or '.join(self.families)} latents; "
                              f"{type(model).__name__} has {model.family.name} latents")
        self.model = model
        self.family = model.family

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return split_parameters(self.model)

    def losses(self, x: torch.Tensor, generator: torch.Generator) -> Losses:
        raise NotImplementedError

    def state_module(self) -> nn.Module | None:
        return None

    @torch.no_grad()
    def validation_bound(self, x: torch.Tensor, num_samples: int, generator: torch.Generator) -> torch.Tensor:
        """(1/S) Σ_s log p(x, h_s) + H(q_φ), h_s ~ q_φ(h|x): the encoder's bound, (B,)."""
        return entropy_bound(self.model, posterior(self.model, x), x, num_samples, generator)

    def step(self, x: torch.Tensor, generator: torch.Generator, optimizers: dict[str, torch.optim.Optimizer],
             grad_sync: Callable[[list[nn.Parameter]], None] | None = None) -> torch.Tensor:
        """One minibatch update with the given optimizers; returns the batch's mean bound (detached)."""
        return apply_losses(self.losses(x, generator), self.parameter_groups(), optimizers, grad_sync)


def apply_losses(out: Losses, groups: dict[str, list[nn.Parameter]], optimizers: dict[str, torch.optim.Optimizer],
                 grad_sync: Callable[[list[nn.Parameter]], None] | None = None) -> torch.Tensor:
    """Gradient of each group's loss with respect to that group only, then one step of every optimizer.

    ``grad_sync`` (data parallelism, ``varinf.distributed.GradSync``) is called once with every
    parameter that got a gradient, after all gradients and before any optimizer step: the single
    place where gradients are averaged across processes.
    """
    by_loss: dict[int, tuple[torch.Tensor, list[str]]] = {}
    for name, loss in out.losses.items():
        by_loss.setdefault(id(loss), (loss, []))[1].append(name)
    jobs = list(by_loss.values())
    for i, (loss, names) in enumerate(jobs):
        params = [p for n in names for p in groups[n]]
        grads = torch.autograd.grad(loss, params, retain_graph=i < len(jobs) - 1, allow_unused=True)
        for p, g in zip(params, grads):
            p.grad = g
    if grad_sync is not None:
        grad_sync([p for loss, names in jobs for n in names for p in groups[n]])
    for name in out.losses:
        optimizers[name].step()
    return out.bound.mean().detach()


def make_optimizer(params, optimizer: str, lr: float, warmup_steps: int = 0) -> torch.optim.Optimizer:
    """Adam or RMSprop (Hjelm et al. 2015 §7: RMSprop 3e-3 for Table 1, Adam 3e-4 for Table 2).

    Adam uses torch's fused kernel (one pass over all parameters; on CPU about 4x faster per step
    than the default multi-tensor path for the Table 1 network, see docs/RESULTS.md). With
    ``warmup_steps`` = W > 0 the learning rate rises linearly, lr·n/W at update n ≤ W.
    """
    params = list(params)
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr, fused=True)
    elif optimizer == "rmsprop":
        opt = torch.optim.RMSprop(params, lr=lr)
    else:
        raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if warmup_steps:
        add_linear_warmup(opt, warmup_steps)
    return opt


def make_optimizers(method: Method, optimizer: str, lr: float, warmup_steps: int = 0
                    ) -> dict[str, torch.optim.Optimizer]:
    """One optimizer per parameter group of ``method``, all with the same rule and learning rate."""
    return {name: make_optimizer(params, optimizer, lr, warmup_steps)
            for name, params in method.parameter_groups().items()}


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
