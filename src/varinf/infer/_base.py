"""The small interface every training method meets, and the one update rule that applies it.

A method says what its losses are; the training loop owns optimizers, checkpoints and devices.

    method.parameter_groups()             {"generative": θ, "inference": φ[, "baseline": ψ]}
    method.losses(x, generator)           Losses(losses={group: scalar loss to minimise}, bound=(B,))
    method.validation_bound(x, S, gen)    (B,) per-datapoint bound on held-out data
    method.state_module()                 an nn.Module of extra state saved in checkpoints, or None

Every method on an amortised model has the groups "generative" (θ) and "inference" (φ), as the
model declares them (``varinf.contract.split_parameters``), so the checkpoint layout is the same
for every method; a method with parameters of its own (NVIL's baseline ψ) adds a group.
[`apply_losses`][varinf.infer._base.apply_losses] takes the gradient of each loss with respect to its group only
(one backward pass per distinct loss tensor, ``inputs=`` the groups it serves), then steps each optimizer once:
the loop's groups share one (``make_optimizers``), so a step is one optimizer call whatever the number of groups.
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
           "GroupOptimizer", "OPTIMIZERS"]

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
        return apply_losses(self.losses(x, generator), optimizer_groups(optimizers), optimizers, grad_sync)


def apply_losses(out: Losses, groups: dict[str, list[nn.Parameter]], optimizers: dict[str, torch.optim.Optimizer],
                 grad_sync: Callable[[list[nn.Parameter]], None] | None = None) -> torch.Tensor:
    """Gradient of each group's loss with respect to that group only, then one step of every optimizer.

    Every group's old gradients are dropped first (a group without a loss this step is then not moved by an
    optimizer it shares, and the new gradients reuse the old ones' memory). An optimizer that serves several
    groups (``make_optimizers``: one update over all groups) steps once. ``grad_sync`` (data parallelism,
    ``varinf.distributed.GradSync``) is called once with every parameter that got a gradient, after all
    gradients and before any optimizer step: the single place where gradients are averaged across processes.
    """
    for params in groups.values():
        for p in params:
            p.grad = None
    by_loss: dict[int, tuple[torch.Tensor, list[str]]] = {}
    for name, loss in out.losses.items():
        by_loss.setdefault(id(loss), (loss, []))[1].append(name)
    jobs = [(loss, [p for n in names for p in groups[n]]) for loss, names in by_loss.values()]
    for i, (loss, params) in enumerate(jobs):               # into .grad of these groups' parameters only
        torch.autograd.backward(loss, inputs=params, retain_graph=i < len(jobs) - 1)
    if grad_sync is not None:
        grad_sync([p for _, params in jobs for p in params])
    for step in dict.fromkeys(optimizers[name].step for name in out.losses):      # each optimizer once
        step()
    return out.bound.mean().detach()


def optimizer_groups(optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, list[nn.Parameter]]:
    """{group: the parameters its optimizer updates}: the groups as the loop fixed them when it built the
    optimizers from ``parameter_groups()`` (read from the optimizers, not by walking the modules every step)."""
    return {name: [p for group in opt.param_groups for p in group["params"]] for name, opt in optimizers.items()}


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


def make_optimizers(method: Method, optimizer: str, lr: float, warmup_steps: int = 0) -> dict[str, GroupOptimizer]:
    """One optimizer over all parameter groups of ``method``, seen as one optimizer per group.

    Every group has the same rule and learning rate, and Adam and RMSprop move each parameter by its own
    gradient and state alone, so one update over all groups is the per-group updates, bit for bit, with the
    fixed cost of one optimizer call per step instead of one per group (docs/RESULTS.md §1.3). Each group's
    [`GroupOptimizer`][varinf.infer.GroupOptimizer] saves and loads its own parameters' state in the
    layout of an optimizer of its own: the checkpoints' layout, one optimizer state per group.
    """
    groups = method.parameter_groups()
    shared = make_optimizer([p for params in groups.values() for p in params], optimizer, lr, warmup_steps)
    return {name: GroupOptimizer(shared, params) for name, params in groups.items()}


class GroupOptimizer:
    """One parameter group's view of an optimizer that updates several groups in one call.

    ``step`` is the shared optimizer's own ``step`` (``apply_losses`` calls it once per training step, however
    many groups share it); ``param_groups`` lists this group's parameters with the shared hyperparameters;
    ``state_dict`` and ``load_state_dict`` hold this group's parameters only, in the format of a torch optimizer
    over them alone (indices 0..n−1 in this group's order), so a checkpoint reads the same as one written with
    an optimizer per group. ``shared`` is the torch optimizer itself: a learning-rate scheduler or a step hook
    goes there.
    """

    def __init__(self, shared: torch.optim.Optimizer, params: list[nn.Parameter]):
        if len(shared.param_groups) != 1:
            raise ConfigError(f"GroupOptimizer views an optimizer with one parameter group, got "
                              f"{len(shared.param_groups)}")
        self.shared, self.params = shared, list(params)
        self.step = shared.step

    @property
    def param_groups(self) -> list[dict]:
        return [{**self.shared.param_groups[0], "params": self.params}]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def state_dict(self) -> dict:
        """This group's state as ``torch.optim.Optimizer.state_dict`` of an optimizer over its parameters alone."""
        hyper = {k: v for k, v in self.shared.param_groups[0].items() if k != "params"}
        state = self.shared.state
        return {"state": {i: state[p] for i, p in enumerate(self.params) if p in state},
                "param_groups": [{**hyper, "params": list(range(len(self.params)))}]}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state saved by ``state_dict`` (or by a torch optimizer of the same rule over this group alone)."""
        own = type(self.shared)(self.params, **self.shared.defaults)           # torch checks and casts the state
        own.load_state_dict(state_dict)
        for p in self.params:
            self.shared.state.pop(p, None)
            if p in own.state:
                self.shared.state[p] = own.state[p]
        self.shared.param_groups[0].update({k: v for k, v in own.param_groups[0].items() if k != "params"})


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
