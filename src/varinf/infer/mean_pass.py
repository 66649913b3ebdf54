"""Mean-pass training of a binary-latent model (Hjelm et al. 2015 Eq. 7 as an amortised loss).

    −L_e = log p(x|μ) + E_q[log p(h)] + H(q),   μ = σ(ℓ_φ(x)),

ascended in encoder and decoder jointly (``varinf.objectives.mean_pass_objective``, the same
function MPVI's refiner ascends in the logits). Not a bound on log p(x), so ``validation_bound``
reports the Monte Carlo ELBO of q_φ.
"""

from __future__ import annotations

from varinf.contract import posterior
from varinf.infer._base import Losses, Method
from varinf.objectives import mean_pass_objective

__all__ = ["MeanPass"]


class MeanPass(Method):
    """Training method ``mean-pass``: ascend Eq. 7 in all parameters."""

    name = "mean-pass"
    families = ("bernoulli",)

    def losses(self, x, generator):
        objective = mean_pass_objective(self.model, posterior(self.model, x), x)   # (B,)
        loss = -objective.mean()
        return Losses({"generative": loss, "inference": loss}, objective.detach())
