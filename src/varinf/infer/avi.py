"""Adaptive importance sampling for binary latents: AVI_T (seed 003 Eq. 9 and §4).

E-step. Start from the encoder's centres μ₀ = σ(ℓ_φ(x)) and take T steps

    h⁽ⁿ⁾ ~ Bernoulli(μ_t),  n = 1..N
    w⁽ⁿ⁾ = p(x, h⁽ⁿ⁾) / q_t(h⁽ⁿ⁾|x),   w̃⁽ⁿ⁾ = w⁽ⁿ⁾ / Σ_m w⁽ᵐ⁾
    μ_{t+1} = Σ_n w̃⁽ⁿ⁾ h⁽ⁿ⁾                                            (Eq. 9)

(``avi_refine``; every datapoint of the batch at once) giving q̃(h|x) = Bernoulli(μ_T).
Damped steps (``rate`` γ < 1, config ``avi_rate``): μ_{t+1} = (1 − γ) μ_t + γ Σ_n w̃⁽ⁿ⁾ h⁽ⁿ⁾, the
"adaptive importance refinement" of Hjelm et al. 2016 (NeurIPS, "Iterative refinement of the
approximate posterior for directed belief networks", Eq. 13). With 200 latents and N ≈ 10–20
samples the normalised weights are nearly one-hot, so the undamped step (γ = 1, Eq. 9) moves μ to
a single sample; a damped step keeps part of the encoder's uncertainty.
M-step. θ ← θ + η (1/N) Σ_n ∇_θ log p(x, h⁽ⁿ⁾), h⁽ⁿ⁾ ~ q̃ (N = ``samples``).
Encoder. φ ← φ − η ∇_φ KL(q̃(h|x) ‖ q_φ(h|x)) (Eq. 6; closed form for factorial Bernoullis).

Clamp. A weighted mean of N binary samples is exactly 0 or 1 in a unit where all samples
agree; q̃ would then give probability 0 to states the posterior allows, which makes
log q̃ = −∞ there and importance sampling with q̃ inconsistent. Every μ_t is therefore
clamped to [ε, 1 − ε] with ε = ``AVI_CLAMP`` = 1e-3 (pass ``clamp`` to change it).
"""

from __future__ import annotations

import torch
from torch import distributions as D

from varinf.config import TrainConfig
from varinf.infer._base import make_optimizer
from varinf.models.sbn import bernoulli_q

__all__ = ["AVI", "avi_refine", "AVI_CLAMP", "bernoulli_kl", "refined_q"]

AVI_CLAMP = 1e-3


@torch.no_grad()
def avi_refine(model, x: torch.Tensor, probs0: torch.Tensor, steps: int, num_samples: int,
               generator: torch.Generator | None, clamp: float = AVI_CLAMP, rate: float = 1.0) -> torch.Tensor:
    """T steps of Eq. 9 (damped by ``rate`` γ) from centres ``probs0`` (B, K); returns μ_T (B, K), clamped."""
    probs = probs0.clamp(clamp, 1 - clamp)
    for _ in range(steps):
        h = torch.bernoulli(probs.expand(num_samples, *probs.shape), generator=generator)   # (N, B, K)
        log_w = model.log_joint(x, h) - bernoulli_q(probs=probs).log_prob(h)               # (N, B)
        w = torch.softmax(log_w, dim=0)                                                     # normalised weights
        target = (w.unsqueeze(-1) * h).sum(0)                                               # Σ_n w̃ h, (B, K)
        probs = (target if rate == 1.0 else torch.lerp(probs, target, rate)).clamp(clamp, 1 - clamp)
    return probs


def refined_q(model, x: torch.Tensor, steps: int, num_samples: int, generator: torch.Generator | None,
              rate: float = 1.0) -> D.Distribution:
    """q̃ = Bernoulli(μ_T) after ``steps`` AVI steps (step γ = ``rate``) from the encoder: batch (B,), event (K,)."""
    with torch.no_grad():
        probs0 = torch.sigmoid(model.encode(x)[0])
    return bernoulli_q(probs=avi_refine(model, x, probs0, steps, num_samples, generator, rate=rate))


def bernoulli_kl(p_probs: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(Bernoulli(p) ‖ Bernoulli(σ(q_logits))) summed over the last dim: (..., K) -> (...)."""
    return D.kl_divergence(D.Bernoulli(probs=p_probs, validate_args=False),
                           D.Bernoulli(logits=q_logits, validate_args=False)).sum(-1)


class AVI:
    """Training method ``avi``: E-step by Eq. 9 (T = ``refine_steps``, N = ``refine_samples``), M-step, KL encoder step."""

    name = "avi"
    validation_description = "Monte Carlo ELBO of the AVI-refined q~ (T steps of Eq. 9 from the encoder)"

    def __init__(self, model, cfg: TrainConfig):
        self.model = model
        self.steps, self.refine_samples, self.samples = cfg.refine_steps, cfg.refine_samples, cfg.samples
        self.rate = cfg.avi_rate
        self.generative_optimizer = make_optimizer(model.generative_parameters(), cfg)
        self.inference_optimizer = make_optimizer(model.inference_parameters(), cfg)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generative": self.generative_optimizer, "inference": self.inference_optimizer}

    def step(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """E-step, M-step on θ, encoder step on φ; returns the refined q̃'s mean ELBO estimate (detached)."""
        q_tilde = refined_q(self.model, x, self.steps, self.refine_samples, generator, self.rate)
        h = torch.bernoulli(q_tilde.base_dist.probs.expand(self.samples, *x.shape[:1], -1), generator=generator)
        log_joint = self.model.log_joint(x, h)                                   # (N, B)
        self.generative_optimizer.zero_grad(set_to_none=True)
        (-log_joint.mean()).backward()
        self.generative_optimizer.step()
        kl = bernoulli_kl(q_tilde.base_dist.probs, self.model.encode(x)[0]).mean()
        self.inference_optimizer.zero_grad(set_to_none=True)
        kl.backward()
        self.inference_optimizer.step()
        return (log_joint.detach() - q_tilde.log_prob(h)).mean()

    @torch.no_grad()
    def validation_bound(self, x: torch.Tensor, num_samples: int, generator: torch.Generator) -> torch.Tensor:
        q_tilde = refined_q(self.model, x, self.steps, self.refine_samples, generator, self.rate)
        h = torch.bernoulli(q_tilde.base_dist.probs.expand(num_samples, -1, -1), generator=generator)
        return (self.model.log_joint(x, h) - q_tilde.log_prob(h)).mean(0)
