"""Mean-pass training of an SBN (seed 003 Eq. 7): the decoder sees the Bernoulli centres.

    L_e = log p(x|μ) + E_q[log p(h)] + H(q),   μ = σ(ℓ(x)),

with E_q[log p(h)] and H(q) exact for a factorial q (``expected_log_prior``, Bernoulli
entropy). L_e is deterministic and differentiable in encoder and decoder; it is not a
bound on log p(x) (log p(x|μ) is not E_q[log p(x|h)]), so ``validation_bound`` reports the
Monte Carlo ELBO of q_φ instead.
"""

from __future__ import annotations

import torch

from varinf.infer._base import SurrogateAscent
from varinf.models.sbn import encoder_elbo, expected_log_prior

__all__ = ["MeanPass", "mean_pass_objective"]


def mean_pass_objective(model, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Eq. 7's objective −L_e per datapoint (negated loss): (B,)."""
    mu = torch.sigmoid(logits)
    reconstruction = model.log_likelihood(x, mu.unsqueeze(0))[0]                # log p(x|μ)
    return reconstruction + expected_log_prior(model.prior_logits, mu) + model.q(logits).entropy()


class MeanPass(SurrogateAscent):
    """Training method ``mean-pass``: ascend Eq. 7 in all parameters with one optimizer."""

    name = "mean-pass"
    validation_description = "Monte Carlo ELBO of the amortised encoder q_phi"

    def objective(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return mean_pass_objective(self.model, *self.model.encode(x), x)

    def validation_bound(self, x: torch.Tensor, num_samples: int, generator: torch.Generator) -> torch.Tensor:
        return encoder_elbo(self.model, x, num_samples, generator)
