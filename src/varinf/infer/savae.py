"""Semi-amortised VAE (Kim, Wiseman, Miller, Sontag & Rush 2018), on varinf's refinement.

Beyond seed 003: the same E-step and M-step as GBVI (``varinf.infer.gbvi``), but the encoder
is trained by back-propagating the *final* bound through the T refinement steps into φ,

    φ ← φ + η ∇_φ L(x, z_T(z₀(φ))),   z_t = z_{t−1} + γ ∇_z L(x, z_{t−1}),  z₀ = encoder_φ(x),

instead of GBVI's KL(q̃ ‖ q_φ) (Eq. 6). The Jacobian ∂z_T/∂z₀ involves Hessian–vector
products of the bound, obtained here by double back-propagation (``refine(...,
create_graph=True)``) where Kim et al. use finite differences. The two encoder updates
are separate functions — :func:`semi_amortized_bound` here and
:func:`varinf.infer.gbvi.encoder_kl_loss` — so that they can be compared.

The decoder update is GBVI's M-step on the refined q̃ held fixed (as in Kim et al.,
θ sees z_T as a constant). ``validation_bound`` is the refined bound, as for GBVI.
"""

from __future__ import annotations

import torch

from varinf.infer.gbvi import GBVI, m_step_objective
from varinf.refinement import gaussian_bound, refine

__all__ = ["SAVAE", "semi_amortized_bound"]


def semi_amortized_bound(model, x: torch.Tensor, *, steps: int, step_rule, num_samples: int,
                         generator: torch.Generator | None, final_samples: int | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The bound after T refinement steps from the encoder, differentiable in φ through the steps.

    Returns (bound (B,), μ_T, log σ_T); the bound is estimated with ``final_samples``
    (default ``num_samples``) fresh reparameterised samples at z_T.
    """
    mu0, log_std0 = model.encode(x)
    r = refine(model.log_joint, x, mu0, log_std0, steps=steps, num_samples=num_samples, generator=generator,
               step_rule=step_rule, create_graph=True)
    bound = gaussian_bound(model.log_joint, x, r.mu, r.log_std, final_samples or num_samples, generator)
    return bound, r.mu, r.log_std


class SAVAE(GBVI):
    """Training method ``savae``: GBVI's E- and M-steps; the encoder ascends the final bound through the steps."""

    name = "savae"

    def step(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        bound, mu, log_std = semi_amortized_bound(self.model, x, steps=self.steps, step_rule=self.step_rule,
                                                  num_samples=self.refine_samples, generator=generator)
        encoder_params = [p for p in self.model.encoder.parameters()]
        grads = torch.autograd.grad(-bound.mean(), encoder_params)                # φ only, through the steps
        self.encoder_optimizer.zero_grad(set_to_none=True)
        for p, g in zip(encoder_params, grads):
            p.grad = g
        # M-step on θ with q̃ = N(μ_T, σ_T²) held fixed (before φ moves: z_T came from the old φ).
        objective, refined = m_step_objective(self.model, x, mu, log_std, self.samples, generator)
        self.decoder_optimizer.zero_grad(set_to_none=True)
        (-objective.mean()).backward()
        self.decoder_optimizer.step()
        self.encoder_optimizer.step()
        return refined.mean().detach()
