"""Neural variational inference and learning (NVIL; Mnih & Gregor 2014) for an SBN.

Score-function gradient with three variance-reduction devices (Mnih & Gregor §3.3):

    learning signal  l(x, h) = log p(x, h) − log q(h|x),          h ~ q_φ(h|x)
    centring         l − c − b_ψ(x)       c: running mean of l − b_ψ(x) (input-independent),
                                          b_ψ: baseline MLP (input-dependent)
    normalisation    divide by max(1, √v), v: running variance of l − b_ψ(x)
    encoder          ∇_φ ≈ ((l − c − b_ψ(x)) / max(1, √v)) ∇_φ log q(h|x)
    decoder          ∇_θ ≈ ∇_θ log p(x, h)
    baseline         ψ ← ψ − η ∇_ψ (l − c − b_ψ(x))²

c and v are exponential moving averages with α = 0.8 (Mnih & Gregor's value). Subtracting
c + b_ψ(x) leaves the gradient unbiased (E_q[∇ log q] = 0); the normalisation rescales
it by a positive per-batch constant. The baseline network and (c, v) are part of the
method's state (``state_module``), saved in checkpoints so a resumed run is bit-identical.
"""

from __future__ import annotations

import torch
from torch import nn

from varinf.config import TrainConfig
from varinf.infer._base import make_optimizer
from varinf.models.sbn import encoder_elbo
from varinf.sampling import draw

__all__ = ["NVIL", "NVILState", "nvil_surrogate"]


def nvil_surrogate(model, q, x: torch.Tensor, num_samples: int = 1, generator: torch.Generator | None = None,
                   baseline: torch.Tensor | float = 0.0, scale: torch.Tensor | float = 1.0
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """NVIL surrogate (B,) and the learning signal l (S, B), detached.

    Value of the surrogate: the ELBO estimate (1/S) Σ_s l_s. Gradient: ((l − baseline)/scale) ∇ log q
    in q's parameters plus ∇_θ log p(x, h) in the model's (baseline: scalar or (B,), a constant).
    """
    h = draw(q, num_samples, generator, reparameterize=False).detach()
    log_q = q.log_prob(h)                                                          # (S, B)
    log_joint = model.log_joint(x, h)
    signal = (log_joint - log_q).detach()
    b = baseline.detach() if torch.is_tensor(baseline) else baseline
    s = scale.detach() if torch.is_tensor(scale) else scale
    score = ((signal - b) / s) * log_q
    surrogate = log_joint + score - score.detach() - log_joint.detach() + signal
    return surrogate.mean(0), signal


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
    def update(self, residual: torch.Tensor) -> None:
        """Move (c, v) towards the batch mean and variance of l − b_ψ(x)."""
        self.mean.mul_(self.alpha).add_((1 - self.alpha) * residual.mean())
        self.var.mul_(self.alpha).add_((1 - self.alpha) * residual.var(unbiased=False))


class NVIL:
    """Training method ``nvil``: score function with learned baseline, centring and variance normalisation."""

    name = "nvil"
    validation_description = "Monte Carlo ELBO of the amortised encoder q_phi"

    def __init__(self, model, cfg: TrainConfig):
        self.model, self.samples = model, cfg.samples
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + 7919)
            self.state = NVILState(model.config.data_dim)
        device = next(model.parameters()).device
        self.state.to(device)
        self.optimizer = make_optimizer(model.parameters(), cfg)
        self.baseline_optimizer = make_optimizer(self.state.parameters(), cfg)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self.optimizer, "baseline": self.baseline_optimizer}

    def state_module(self) -> nn.Module:
        return self.state

    def step(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        q = self.model.q(*self.model.encode(x))
        b = self.state(x)                                                          # b_ψ(x), (B,)
        h = draw(q, self.samples, generator, reparameterize=False)
        log_joint, log_q = self.model.log_joint(x, h), q.log_prob(h)               # (S, B)
        signal = (log_joint - log_q).detach()                                      # l
        self.state.update(signal - b.detach())
        centre = self.state.mean + b.detach()
        scale = self.state.var.sqrt().clamp(min=1.0)
        score = ((signal - centre) / scale) * log_q
        surrogate = (log_joint + score).mean()
        self.optimizer.zero_grad(set_to_none=True)
        (-surrogate).backward()
        self.optimizer.step()
        baseline_loss = ((signal - self.state.mean - b) ** 2).mean()
        self.baseline_optimizer.zero_grad(set_to_none=True)
        baseline_loss.backward()
        self.baseline_optimizer.step()
        return signal.mean().detach()

    def validation_bound(self, x: torch.Tensor, num_samples: int, generator: torch.Generator) -> torch.Tensor:
        return encoder_elbo(self.model, x, num_samples, generator)
