"""Hamiltonian variational inference: the encoder's sample moved by K leapfrog steps, with an auxiliary bound.

Salimans, Kingma & Welling (2015), "Markov Chain Monte Carlo and Variational Inference: Bridging the
Gap" (ICML), §2–3 and Alg. 2 with one MCMC transition (the "HVI¹_K" rows of Hjelm et al. 2015 Table 1):

    z₀ ~ q_φ(z|x),  v₀ ~ q(v|x) = N(0, I)                     start and momentum (refreshed once)
    (z_K, v_K) = K leapfrog steps of H(z, v) = −log p(x, z) + ½ |v|²,  step ε_k per latent dimension
    L_HVI(x) = E[ log p(x, z_K) + log r_ψ(v_K|x, z_K) − log q_φ(z₀|x) − log q(v₀|x) ]

(Salimans et al. 2015 Eq. 11 with T = 1; the leapfrog map is volume preserving, so its Jacobian is 1).
r_ψ(v|x, z) is the learned reverse model, a diagonal Gaussian from a small MLP on (x, z). L_HVI ≤
log p(x) for any ε and r_ψ, and is tight when r_ψ is the exact reverse conditional.

Parameters: the step sizes log ε (K, latent_dim) and the reverse model ψ belong to the **inference**
group. They are variational parameters like φ: they shape the approximate posterior of z_K and the
auxiliary bound, are trained on the same bound with the same optimizer, and leave p_θ untouched; a
third group would only be needed for an optimizer of their own. They are saved in checkpoints as the
method's state (``method.*`` tensors); ``varinf eval`` scores the encoder's q_φ alone.

K = 0: no dynamics, so z_K = z₀ and v_K = v₀; with nothing to learn there is no reverse model and
r(v|x, z) is q(v|x) itself, so the auxiliary terms cancel and the bound is SGVB-A (Kingma & Welling
2014 Eq. 6) on the same draws.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from varinf.contract import log_joint
from varinf.families import GAUSSIAN
from varinf.infer._base import Losses, Method
from varinf.models.vae import _mlp
from varinf.streams import Stream

__all__ = ["HVI", "HVIState", "INITIAL_STEP"]

# ε of every leapfrog step and latent dimension at initialisation (then learned).
INITIAL_STEP = 0.02


class HVIState(nn.Module):
    """HVI's own parameters: log step sizes (K, latent_dim) and the reverse model r_ψ(v|x, z)."""

    def __init__(self, data_dim: int, latent_dim: int, steps: int, hidden: tuple[int, ...] = (),
                 activation: str = "softplus"):
        super().__init__()
        self.log_step = nn.Parameter(torch.full((steps, latent_dim), math.log(INITIAL_STEP)))    # log ε
        self.reverse = _mlp([data_dim + latent_dim, *hidden, 2 * latent_dim], activation) if steps else None
        if self.reverse is not None:
            with torch.no_grad():             # r_ψ starts at N(0, I), the momentum's own distribution
                self.reverse[-1].weight.zero_()
                self.reverse[-1].bias.zero_()

    def reverse_params(self, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std) of r_ψ(v|x, z): x (B, D), z (S, B, K) -> two (S, B, K)."""
        inputs = torch.cat([x.expand(*z.shape[:-1], x.shape[-1]), z], dim=-1)      # (S, B, D + K)
        mean, log_std = self.reverse(inputs).chunk(2, dim=-1)
        return mean, log_std


def momentum_log_prob(v: torch.Tensor) -> torch.Tensor:
    """log q(v|x) = log N(v; 0, I) = −½ Σ_k (v_k² + log 2π): (S, B, K) -> (S, B)."""
    return -0.5 * (v.pow(2) + math.log(2 * math.pi)).sum(-1)


class HVI(Method):
    """Training method ``hvi``: ascend L_HVI in θ, φ, ε and ψ (Salimans et al. 2015, one transition)."""

    name = "hvi"
    families = ("gaussian",)
    validation_description = "HVI auxiliary bound of the encoder's q_phi moved by the learned leapfrog steps"

    def __init__(self, model, data_dim: int, steps: int = 5, samples: int = 1, hidden: tuple[int, ...] = (),
                 activation: str = "softplus", seed: int = 0):
        super().__init__(model)
        self.steps, self.samples = steps, samples
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 104729)
            self.state = HVIState(data_dim, model.latent_dim, steps, hidden, activation)
        p = next(iter(model.parameters()))
        self.state.to(device=p.device, dtype=p.dtype)

    def parameter_groups(self):
        groups = super().parameter_groups()
        groups["inference"] = groups["inference"] + list(self.state.parameters())      # φ, log ε, ψ
        return groups

    def state_module(self) -> nn.Module:
        return self.state

    def _log_joint_and_grad(self, x: torch.Tensor, z: torch.Tensor, create_graph: bool
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(x, z) (S, B) and ∇_z log p(x, z) (S, B, K); differentiable further when ``create_graph``."""
        if not create_graph:
            z = z.detach().requires_grad_()
        lp = log_joint(self.model, x, z)                                            # (S, B)
        (grad,) = torch.autograd.grad(lp.sum(), z, create_graph=create_graph)
        return lp, grad

    def leapfrog(self, x: torch.Tensor, z: torch.Tensor, v: torch.Tensor, create_graph: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """K leapfrog steps of H(z, v) = −log p(x, z) + ½|v|² (Neal 2011 Eqs. 5.18–5.20): (z_K, v_K, log p(x, z_K)).

            v ← v + ½ ε ⊙ ∇_z log p(x, z);   z ← z + ε ⊙ v;   v ← v + ½ ε ⊙ ∇_z log p(x, z)

        Each of the three updates is a shear, so the map has Jacobian determinant 1.
        """
        if self.steps == 0:
            return z, v, log_joint(self.model, x, z)
        lp, grad = self._log_joint_and_grad(x, z, create_graph)
        for step in self.state.log_step.exp():                                      # ε (K,) per step
            v = v + 0.5 * step * grad
            z = z + step * v
            lp, grad = self._log_joint_and_grad(x, z, create_graph)
            v = v + 0.5 * step * grad
        return z, v, lp

    def reverse_log_prob(self, x: torch.Tensor, z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """log r_ψ(v|x, z): (S, B). With K = 0 it is log q(v|x) (nothing moved, nothing to learn)."""
        if self.state.reverse is None:
            return momentum_log_prob(v)
        return GAUSSIAN.log_prob(self.state.reverse_params(x, z), v)

    def bound(self, x: torch.Tensor, num_samples: int, generator: torch.Generator,
              create_graph: bool = True) -> torch.Tensor:
        """L_HVI(x) averaged over ``num_samples`` draws of (z₀, v₀) (Salimans et al. 2015 Eq. 11, T = 1): (B,)."""
        params = self.model.encode(x)                                               # φ: (μ, log σ), (B, K)
        z0 = self.family.draw(params, num_samples, generator)                       # z₀ ~ q_φ(z|x)   (S, B, K)
        v0 = Stream.of(generator).draw(torch.randn, z0.shape, z0, dim=1)           # v₀ ~ N(0, I), the global batch's rows
        log_q = self.family.log_prob(params, z0) + momentum_log_prob(v0)            # log q_φ(z₀|x) + log q(v₀|x)
        z, v, log_p = self.leapfrog(x, z0, v0, create_graph)                        # log p(x, z_K)   (S, B)
        log_r = self.reverse_log_prob(x, z, v)                                      # log r_ψ(v_K|x, z_K)
        return (log_p + log_r - log_q).mean(0)

    def losses(self, x, generator):
        bound = self.bound(x, self.samples, generator)
        loss = -bound.mean()
        return Losses({"generative": loss, "inference": loss}, bound.detach())

    @torch.no_grad()
    def validation_bound(self, x, num_samples, generator):
        """L_HVI on held-out data with ``num_samples`` draws per datapoint: (B,)."""
        with torch.enable_grad():                 # the leapfrog steps need ∇_z log p(x, z)
            return self.bound(x, num_samples, generator, create_graph=False).detach()
