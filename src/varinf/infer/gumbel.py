"""Gumbel-Softmax / Concrete relaxation of binary latents (Jang, Gu & Poole 2017; Maddison, Mnih & Teh 2017).

A Bernoulli(σ(α)) unit is the hard threshold of a logistic variable, b = H(α + L), L = log u − log(1 − u),
u ~ U(0, 1) (the Gumbel-max trick for two classes, Jang et al. Eq. 1; the logistic difference of two
Gumbels, the "binary Concrete" of Maddison et al.). The relaxation replaces H by a sigmoid at temperature τ:

    h̃ = σ((α + L) / τ) ∈ (0, 1)                     (Jang et al. Eq. 2 with two classes; Maddison et al.'s binary Concrete)

and the objective is evaluated at the relaxed units, which the reparameterisation differentiates:

    L̃_τ(x) = E_u[ log p(x, h̃) − log q(h̃|x) ],   log p / log q: the Bernoulli mass functions Σ h log σ(a) +
                                                  (1 − h) log σ(−a), linear in h, evaluated at h̃ ∈ (0, 1)

(the relaxed objective f(σ_λ(z)) of Tucker et al. 2017 (REBAR) with f = log p − log q). On a deep SBN every layer is
relaxed and the layers above (encoder and decoder) see the relaxed units of the layer below. L̃_τ → the
ELBO's summand as τ → 0, but for τ > 0 its gradient is **not** the ELBO's: the estimator is biased, with
lower variance for larger τ (bias and variance measured against the exact gradient, docs/RESULTS.md).
The reported bound is the ELBO estimate log p(x, b) − log q(b|x) at the hard units b = H(α + L) of the same
noise (an unbiased ELBO estimate), not L̃_τ.

Straight-through variant (``gumbel-st``; Jang et al. §2.2 "Straight-Through Gumbel-Softmax"): the forward
pass uses the hard units b (so the value is the ELBO estimate and every layer sees binary parents) and the
backward pass uses ∂h̃/∂α, i.e. h_st = b + h̃ − stop_gradient(h̃). Also biased.

Temperature τ is the run's ``temperature`` (default 0.5, varinf's choice; fixed during training, no
annealing schedule).
"""

from __future__ import annotations

import torch

from varinf.contract import log_joint
from varinf.errors import ConfigError
from varinf.families import BERNOULLI
from varinf.infer._base import Losses, Method

__all__ = ["GumbelSoftmax", "relaxed_units", "relaxed_objective"]

GUMBEL_DEFAULT_TEMPERATURE = 0.5


def relaxed_units(alpha: torch.Tensor, u: torch.Tensor, temperature: float, hard: bool) -> torch.Tensor:
    """h̃ = σ((α + log u − log(1 − u)) / τ) (Maddison et al. 2017, binary Concrete; Jang et al. 2017 Eq. 2);
    with ``hard``, b = 1[α + L > 0] forward and ∂h̃ backward (Jang et al. §2.2). α, u (S, B, K) -> (S, B, K)."""
    z = alpha + torch.log(u) - torch.log1p(-u)                                   # α + L, L ~ Logistic(0, 1)
    soft = torch.sigmoid(z / temperature)                                        # h̃
    if not hard:
        return soft
    return (z > 0).to(z.dtype) + soft - soft.detach()                            # forward b, backward ∂h̃


def relaxed_objective(model, x: torch.Tensor, params, u: list[torch.Tensor], temperature: float, hard: bool
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(x, h̃) − log q(h̃|x), h̃) per sample, (S, B) and (S, B, K); h̃ relaxed layer by layer from uniforms u."""
    family = model.family
    h, alphas = family.chain(params, lambda l, a: relaxed_units(a, u[l], temperature, hard))
    layers = torch.split(h, [v.shape[-1] for v in u], dim=-1)
    log_q = sum(BERNOULLI.log_prob((a,), layer) for a, layer in zip(alphas, layers))   # Σ_l log q(h̃_l|h̃_{l−1})
    return log_joint(model, x, h) - log_q, h


class GumbelSoftmax(Method):
    """Training methods ``gumbel`` (relaxed) and ``gumbel-st`` (straight-through): ascend L̃_τ by reparameterisation."""

    families = ("bernoulli", "layered-bernoulli")

    def __init__(self, model, samples: int = 1, temperature: float = GUMBEL_DEFAULT_TEMPERATURE, hard: bool = False):
        self.name = "gumbel-st" if hard else "gumbel"
        super().__init__(model)
        if not temperature > 0:
            raise ConfigError(f"temperature must be a number > 0, got {temperature!r}")
        self.samples, self.temperature, self.hard = samples, temperature, hard

    def losses(self, x, generator):
        params = self.model.encode(x)
        u = self.family.uniforms(params[0], self.samples, generator)             # [(S, B, K_l)]
        objective, h = relaxed_objective(self.model, x, params, u, self.temperature, self.hard)   # (S, B)
        if self.hard:
            bound = objective.detach()                                           # the ELBO estimate at b
        else:
            with torch.no_grad():                                                # the same noise, hard units
                bound = relaxed_objective(self.model, x, params, u, self.temperature, True)[0]
        loss = -objective.mean()
        return Losses({"generative": loss, "inference": loss}, bound.mean(0))
