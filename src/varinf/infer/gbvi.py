"""Gradient-backprop variational inference (GBVI, seed 003 §2–4): EM with iterative refinement.

Each minibatch update of training method ``gbvi``:

    E-step   z₀ = (μ, log σ) = encoder_φ(x) (no gradient to φ), then T refinement steps
             z_t = z_{t−1} + γ ∇_z L(x, z_{t−1})  (Eq. 4; ``varinf.refinement.refine``)
             giving q̃(h|x) = N(μ_T, diag σ_T²).
    M-step   θ ← θ + η (1/N) Σ_n ∇_θ log p_θ(x, h⁽ⁿ⁾),  h⁽ⁿ⁾ ~ q̃   (§4.2; N = ``samples``, 20 in the paper)
    encoder  φ ← φ − η ∇_φ C_q(φ),  C_q(φ) = KL(q̃(h|x) ‖ q_φ(h|x))   (Eq. 6, closed form for
             diagonal Gaussians; q̃ is a constant here).

θ (decoder) and φ (encoder) have their own optimizers, both in ``optimizers()`` so that
checkpoints hold both and a resumed run is bit-identical. All noise comes from the
training generator.

Reported bounds. ``step`` returns the bound of the refined q̃ (estimated with the M-step's
N samples and the closed-form entropy, before θ moves). ``validation_bound`` — the number
early stopping follows — is also the bound of the *refined* q̃ (T steps from the encoder,
the training γ and step rule), because the paper reports the refined-posterior bound for
GBVI; the encoder-only bound is available from ``varinf eval`` (``test_elbo``).
"""

from __future__ import annotations

import torch

from varinf.config import TrainConfig
from varinf.infer._base import make_optimizer
from varinf.refinement import gaussian_bound, gaussian_entropy, gaussian_kl, make_step_rule, refine

__all__ = ["GBVI", "m_step_objective", "encoder_kl_loss", "refined_bound"]


def m_step_objective(model, x: torch.Tensor, mu: torch.Tensor, log_std: torch.Tensor, num_samples: int,
                     generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(1/N) Σ_n log p_θ(x, h⁽ⁿ⁾) with h⁽ⁿ⁾ ~ q̃ = N(μ, σ²) held fixed, and the bound of q̃: two (B,) tensors.

    The first is the M-step objective (its gradient is §4.2's, in θ only: q̃ is detached);
    the second adds the closed-form entropy H(q̃), which does not depend on θ.
    """
    mu, log_std = mu.detach(), log_std.detach()
    eps = torch.randn((num_samples, *mu.shape), generator=generator, dtype=mu.dtype, device=mu.device)
    expected_log_joint = model.log_joint(x, mu + log_std.exp() * eps).mean(0)
    return expected_log_joint, expected_log_joint.detach() + gaussian_entropy(log_std)


def encoder_kl_loss(mu_tilde: torch.Tensor, log_std_tilde: torch.Tensor, mu: torch.Tensor,
                    log_std: torch.Tensor) -> torch.Tensor:
    """C_q(φ) = KL(q̃(h|x) ‖ q_φ(h|x)) per datapoint (seed 003 Eq. 6), shape (B,); q̃ is a constant."""
    return gaussian_kl(mu_tilde.detach(), log_std_tilde.detach(), mu, log_std)


@torch.no_grad()
def refined_bound(model, x: torch.Tensor, *, steps: int, rate: float, step_rule: str, refine_samples: int,
                  num_samples: int, generator: torch.Generator | None) -> torch.Tensor:
    """Bound of q̃ after T refinement steps from the encoder's output, shape (B,)."""
    mu0, log_std0 = model.encode(x)
    r = refine(model.log_joint, x, mu0, log_std0, steps=steps, rate=rate, num_samples=refine_samples,
               generator=generator, step_rule=step_rule)
    return gaussian_bound(model.log_joint, x, r.mu, r.log_std, num_samples, generator)


class GBVI:
    """Training method ``gbvi``: EM with T refinement steps per E-step and the KL encoder update (Eq. 6)."""

    name = "gbvi"
    validation_description = "bound of the refined q~ (T refinement steps from the encoder)"

    def __init__(self, model, cfg: TrainConfig):
        self.model = model
        self.steps, self.rate = cfg.refine_steps, cfg.inference_rate
        self.step_rule = make_step_rule(cfg.refine_optimizer, cfg.inference_rate)
        self.refine_samples, self.samples = cfg.refine_samples, cfg.samples
        self.decoder_optimizer = make_optimizer(model.decoder.parameters(), cfg)
        self.encoder_optimizer = make_optimizer(model.encoder.parameters(), cfg)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"decoder": self.decoder_optimizer, "encoder": self.encoder_optimizer}

    def e_step(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output, then T refinement steps: the refined (μ, log σ) of q̃, detached."""
        with torch.no_grad():
            mu0, log_std0 = self.model.encode(x)
        r = refine(self.model.log_joint, x, mu0, log_std0, steps=self.steps, num_samples=self.refine_samples,
                   generator=generator, step_rule=self.step_rule)
        return r.mu, r.log_std

    def m_step(self, x: torch.Tensor, mu: torch.Tensor, log_std: torch.Tensor,
               generator: torch.Generator) -> torch.Tensor:
        """One optimizer step on θ ascending (1/B) Σ_i (1/N) Σ_n log p(x⁽ⁱ⁾, h⁽ⁿ⁾); returns q̃'s mean bound."""
        objective, bound = m_step_objective(self.model, x, mu, log_std, self.samples, generator)
        self.decoder_optimizer.zero_grad(set_to_none=True)
        (-objective.mean()).backward()
        self.decoder_optimizer.step()
        return bound.mean()

    def encoder_step(self, x: torch.Tensor, mu: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
        """One optimizer step on φ descending (1/B) Σ_i KL(q̃ ‖ q_φ) (Eq. 6); returns the mean KL."""
        kl = encoder_kl_loss(mu, log_std, *self.model.encode(x)).mean()
        self.encoder_optimizer.zero_grad(set_to_none=True)
        kl.backward()
        self.encoder_optimizer.step()
        return kl.detach()

    def step(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """E-step, M-step on θ, encoder step on φ; returns the refined q̃'s mean bound (detached)."""
        mu, log_std = self.e_step(x, generator)
        bound = self.m_step(x, mu, log_std, generator)
        self.encoder_step(x, mu, log_std)
        return bound.detach()

    @torch.no_grad()
    def validation_bound(self, x: torch.Tensor, num_samples: int, generator: torch.Generator) -> torch.Tensor:
        """Per-datapoint bound of the refined q̃ on held-out data (see the module docstring), shape (B,)."""
        return refined_bound(self.model, x, steps=self.steps, rate=self.rate, step_rule=self.step_rule,
                             refine_samples=self.refine_samples, num_samples=num_samples, generator=generator)
