"""Neural variational inference and learning (NVIL; Mnih & Gregor 2014).

Score-function gradient with three variance-reduction devices (Mnih & Gregor §3.3):

    learning signal  l(x, h) = log p(x, h) − log q(h|x),          h ~ q_φ(h|x)
    centring         l − c − b_ψ(x)       c: running mean of l − b_ψ(x) (input-independent),
                                          b_ψ: baseline MLP (input-dependent)
    normalisation    divide by max(1, √v), v: running variance of l − b_ψ(x)
    encoder          ∇_φ ≈ ((l − c − b_ψ(x)) / max(1, √v)) ∇_φ log q(h|x)
    decoder          ∇_θ ≈ ∇_θ log p(x, h)
    baseline         ψ ← ψ − η ∇_ψ (l − c − b_ψ(x))²

c and v are exponential moving averages with α = 0.8 (Mnih & Gregor's value). Subtracting
c + b_ψ(x) leaves the gradient unbiased (E_q[∇ log q] = 0); the normalisation rescales it by a
positive per-batch constant. The baseline network and (c, v) are the method's state
(``state_module``), saved in checkpoints so a resumed run is bit-identical; ψ is the parameter
group "baseline".
"""

from __future__ import annotations

import torch
from torch import nn

from varinf.contract import log_joint
from varinf.distributed import global_moments
from varinf.infer._base import Losses, Method, apply_losses
from varinf.objectives import score_function_terms
from varinf.streams import Shard, Stream

__all__ = ["NVIL", "NVILState"]


class NVILState(nn.Module):
    """The baseline MLP b_ψ(x) (D–hidden–1, tanh) and the running mean c / variance v of the signal."""

    def __init__(self, data_dim: int, hidden: int = 100, alpha: float = 0.8):
        super().__init__()
        self.alpha = alpha
        self.net = nn.Sequential(nn.Linear(data_dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("var", torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)

    @torch.no_grad()
    def updated(self, residual: torch.Tensor, shard: Shard | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(c, v) moved towards the batch mean and variance of l − b_ψ(x): c ← α c + (1 − α) mean, likewise v.

        Returns the new values and leaves the state as it is ([`set_moments`][varinf.infer.nvil.NVILState.set_moments]
        stores them, in ``NVIL.step``). Under data parallelism (``shard``, the batch shard of the step's
        random stream) the moments are those of the whole global minibatch (all processes' rows,
        ``varinf.distributed.global_moments``), so every process keeps the same (c, v) as one process would.
        """
        mean, var = global_moments(residual, shard)
        return self.mean * self.alpha + (1 - self.alpha) * mean, self.var * self.alpha + (1 - self.alpha) * var

    @torch.no_grad()
    def set_moments(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        """Store the running moments (c, v)."""
        self.mean.copy_(mean)
        self.var.copy_(var)


class NVIL(Method):
    """Training method ``nvil``: score function with learned baseline, centring and variance normalisation."""

    name = "nvil"
    families = ("bernoulli", "layered-bernoulli", "gaussian")

    def __init__(self, model, data_dim: int, samples: int = 1, seed: int = 0):
        super().__init__(model)
        self.samples = samples
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 7919)
            self.state = NVILState(data_dim)
        self.state.to(next(model.parameters()).device)

    def parameter_groups(self):
        return {**super().parameter_groups(), "baseline": list(self.state.parameters())}

    def state_module(self) -> nn.Module:
        return self.state

    def losses(self, x, generator):
        """The losses of one step, computed with the running moments this batch moves them to (a pure function:
        ``step`` stores the moments)."""
        return self._losses_and_moments(x, generator)[0]

    def step(self, x, generator, optimizers, grad_sync=None):
        """One update of θ, φ and ψ, then the running moments (c, v) moved by this batch."""
        out, moments = self._losses_and_moments(x, generator)
        bound = apply_losses(out, self.parameter_groups(), optimizers, grad_sync)
        self.state.set_moments(*moments)
        return bound

    def _losses_and_moments(self, x, generator) -> tuple[Losses, tuple[torch.Tensor, torch.Tensor]]:
        params = self.model.encode(x)
        b = self.state(x)                                                            # b_ψ(x)   (B,)
        h = self.family.draw(params, self.samples, generator).detach()               # (S, B, K)
        lj, log_q = log_joint(self.model, x, h), self.family.log_prob(params, h)     # (S, B)
        signal = (lj - log_q).detach()                                               # l        (S, B)
        mean, var = self.state.updated(signal - b.detach(), Stream.of(generator).shard)   # (c, v) after this batch
        centre = mean + b.detach()                                                   # c + b_ψ(x)
        scale = var.sqrt().clamp(min=1.0)                                            # max(1, √v)
        surrogate = score_function_terms(lj, log_q, centre, scale).mean()            # θ and φ
        baseline_loss = ((signal - mean - b) ** 2).mean()                            # ψ
        return Losses({"generative": -surrogate, "inference": -surrogate, "baseline": baseline_loss},
                      signal.mean(0)), (mean, var)
