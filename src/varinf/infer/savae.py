"""Semi-amortised VAE (Kim, Wiseman, Miller, Sontag & Rush 2018), on varinf's refinement.

The same E-step and M-step as GBVI (``varinf.infer.refined_em``), but the encoder is trained by
back-propagating the *final* bound through the T refinement steps into φ,

    φ ← φ + η ∇_φ L(x, z_T(z₀(φ))),   z_t = z_{t−1} + γ ∇_z L(x, z_{t−1}),  z₀ = encoder_φ(x),

instead of GBVI's KL(q̃ ‖ q_φ) (Hjelm et al. 2015 Eq. 6). The Jacobian ∂z_T/∂z₀ involves
Hessian–vector products of the bound, obtained here by double back-propagation
(``create_graph=True``) where Kim et al. use finite differences. The decoder update is GBVI's
M-step on the refined q̃ held fixed. ``validation_bound`` is the refined bound, as for GBVI.
"""

from __future__ import annotations

import torch

from varinf.families import Posterior
from varinf.infer._base import Losses
from varinf.infer.refined_em import RefinedEM, m_step_objective
from varinf.objectives import entropy_bound
from varinf.refinement import GradientRefiner
from varinf.streams import Rng

__all__ = ["SAVAE", "semi_amortized_bound"]


def semi_amortized_bound(model, x: torch.Tensor, refiner: GradientRefiner, generator: Rng,
                         final_samples: int | None = None) -> tuple[torch.Tensor, Posterior]:
    """The bound after T refinement steps from the encoder, differentiable in φ through the steps.

    Returns (bound (B,), q_T); the bound is estimated with ``final_samples`` (default the
    refiner's N) fresh reparameterised samples of q_T.
    """
    q_t = refiner.refine(model, refiner.start(model, x), x, generator, create_graph=True)
    return entropy_bound(model, q_t, x, final_samples or refiner.samples, generator), q_t


class SAVAE(RefinedEM):
    """Training method ``savae``: GBVI's E- and M-steps; the encoder ascends the final bound through the steps."""

    families = ("gaussian",)

    def __init__(self, model, refiner: GradientRefiner, samples: int = 20, valid_refine_steps: int | None = None):
        super().__init__(model, refiner, samples, valid_refine_steps, name="savae")

    def losses(self, x, generator):
        bound, q_tilde = semi_amortized_bound(self.model, x, self.refiner, generator)    # φ through the steps
        q_tilde = q_tilde.detach()
        h = q_tilde.draw(self.samples, generator).detach()                                # (N, B, K)
        expected = m_step_objective(self.model, x, h)                                     # θ, q̃ fixed  (B,)
        encoder_loss = -bound.mean()
        # θ must not receive the encoder loss's gradient: the encoder group's loss is its own tensor.
        return Losses({"generative": -expected.mean(), "inference": encoder_loss},
                      expected.detach() + q_tilde.entropy())
