"""EM with iterative refinement of the approximate posterior (Hjelm et al. 2015, §2 and §4), any refiner.

Each minibatch update:

    E-step   z₀ = q_φ(x) (no gradient to φ), then T refinement steps z_T = refiner(z₀)  →  q̃(h|x)
    M-step   θ ← θ + η (1/N) Σ_n ∇_θ log p_θ(x, h⁽ⁿ⁾),  h⁽ⁿ⁾ ~ q̃   (§4.2; N = ``samples``, 20 in the paper)
    encoder  φ ← φ − η ∇_φ C_q(φ),  C_q(φ) = KL(q̃(h|x) ‖ q_φ(h|x))   (Eq. 6, closed form; q̃ constant)

Only the refiner changes between the paper's rows (``varinf.refinement``):

    gbvi   GaussianGradient             Gaussian latents, Eqs. 3–5   (Table 1, GBVI₂₀)
    mpvi   MeanPassGradient             binary latents, Eq. 7        (Table 2, MPVI₂₀)
    stvi   StraightThroughGradient      binary latents, Eq. 8
    avi    AdaptiveImportanceSampling   binary latents, Eq. 9        (Table 2, AVI₂₀)

On a deep SBN (layered latents) ``mpvi``/``stvi``/``avi`` use the same operator on every layer at once
(``Refiner.for_model``: ``varinf.refinement.Layered*``): q̃ is factorial over all units, started from the
encoder's mean-field pass, and Eq. 6's KL(q̃ ‖ q_φ) is estimated from the M-step's N draws of q̃
(so with T = 0, q̃ is that mean-field start, not q_φ: the T = 0 statement below is for one layer).

With T = 0, q̃ = q_φ: the M-step is the θ-update of the plain amortised method with the same
samples and the encoder's gradient is zero (KL(q ‖ q) has a stationary point at φ) — the paper's
"variational inference in the limit of no additional gradient steps" (tested).

Reported bounds. ``losses(...).bound`` is q̃'s bound (1/N) Σ_n log p(x, h⁽ⁿ⁾) + H(q̃) from the M-step's
samples, before θ moves. ``validation_bound`` — the number early stopping follows — refines
``valid_refine_steps`` steps (0: the encoder's own bound, the protocol of the authors' AVI code;
T: the refined bound the paper reports for GBVI).
"""

from __future__ import annotations

import torch

from varinf.contract import log_joint, posterior
from varinf.infer._base import Losses, Method
from varinf.objectives import entropy_bound
from varinf.families import Posterior
from varinf.refinement import Refiner
from varinf.streams import Rng

__all__ = ["RefinedEM", "m_step_objective", "encoder_kl_loss"]


def m_step_objective(model, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """(1/N) Σ_n log p_θ(x, h⁽ⁿ⁾) per datapoint (B,), h (N, B, K) drawn from q̃ and held fixed (§4.2)."""
    return log_joint(model, x, h.detach()).mean(0)


def encoder_kl_loss(family, refined: tuple[torch.Tensor, ...], encoded: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """C_q(φ) = KL(q̃(h|x) ‖ q_φ(h|x)) per datapoint (Hjelm et al. 2015 Eq. 6), (B,); q̃ is a constant."""
    return family.kl(tuple(p.detach() for p in refined), encoded)


class RefinedEM(Method):
    """E-step by ``refiner`` from the encoder, M-step on θ with N samples of q̃, φ-step on KL(q̃ ‖ q_φ)."""

    def __init__(self, model, refiner: Refiner, samples: int = 20, valid_refine_steps: int | None = None,
                 name: str = "refined-em"):
        refiner = refiner.for_model(model)             # a deep SBN: the operator on every layer
        self.name, self.families = name, refiner.families()
        super().__init__(model)                        # the one family-fit check of training (Method)
        self.refiner, self.samples = refiner, samples
        self.valid_refine_steps = refiner.steps if valid_refine_steps is None else valid_refine_steps
        self.validation_description = (
            f"bound of the refined q~ ({self.valid_refine_steps} {refiner.name} steps from the encoder)"
            if self.valid_refine_steps else "Monte Carlo ELBO of the amortised encoder q_phi")

    def e_step(self, x: torch.Tensor, generator: Rng) -> Posterior:
        """q̃ = the refined q_T, detached."""
        with torch.no_grad():
            q0 = self.refiner.start(self.model, x)
        return self.refiner.refine(self.model, q0, x, generator)

    def losses(self, x: torch.Tensor, generator: Rng) -> Losses:
        q_tilde = self.e_step(x, generator)                                         # q̃, params each (B, K)
        h = q_tilde.draw(self.samples, generator).detach()                          # h⁽ⁿ⁾ ~ q̃   (N, B, K)
        expected = m_step_objective(self.model, x, h)                                # E_q̃ log p(x,h)  (B,)
        kl = self.refiner.encoder_loss(self.model, q_tilde, x, h)                   # Eq. 6 on φ     (B,)
        bound = expected.detach() + q_tilde.entropy()                               # q̃'s bound      (B,)
        return Losses({"generative": -expected.mean(), "inference": kl.mean()}, bound)

    @torch.no_grad()
    def validation_bound(self, x: torch.Tensor, num_samples: int, generator: torch.Generator) -> torch.Tensor:
        """Bound of q̃ after ``valid_refine_steps`` steps (0: the encoder's bound), (B,)."""
        if not self.valid_refine_steps:
            return entropy_bound(self.model, posterior(self.model, x), x, num_samples, generator)
        q_tilde = self.refiner.with_steps(self.valid_refine_steps).refine(
            self.model, self.refiner.start(self.model, x), x, generator)
        return entropy_bound(self.model, q_tilde, x, num_samples, generator)
