"""VIMCO: variational inference for Monte Carlo objectives (Mnih & Rezende 2016).

The k-sample bound of Burda et al. (2016) Eq. 8 / Mnih & Rezende (2016), for binary latents (one or more layers),
with h⁽¹⁾…h⁽ᵏ⁾ ~ q_φ(h|x) drawn *without* reparameterisation (binary latents):

    f_i = p(x, h⁽ⁱ⁾) / q_φ(h⁽ⁱ⁾|x),       L̂ = log (1/k) Σ_i f_i,      w̃_i = f_i / Σ_j f_j

    ∇_{θ,φ} L̂ ≈ Σ_i w̃_i ∇ log f_i  +  Σ_i (L̂ − L̂_{−i}) ∇_φ log q_φ(h⁽ⁱ⁾|x)        (Algorithm 1)

    L̂_{−i} = log (1/k) (Σ_{j≠i} f_j + f̂_{−i}),   f̂_{−i} = exp( (1/(k−1)) Σ_{j≠i} log f_j )   (Algorithm 1: the
                                                                          geometric-mean leave-one-out)

The first term is the gradient of L̂ through the densities (autograd of the log-sum-exp); the second is
the score-function term, each sample's learning signal L̂ centred by the bound with that sample replaced
by the geometric mean of the others: a baseline that does not depend on h⁽ⁱ⁾, so the estimator is
unbiased for ∇ L_k = ∇ E[L̂] (tested against the exact ∇L_k by enumeration). Needs k ≥ 2.
"""

from __future__ import annotations

import math

import torch

from varinf.contract import log_joint
from varinf.errors import ConfigError
from varinf.infer._base import Losses, Method
from varinf.objectives import logmeanexp

__all__ = ["VIMCO", "leave_one_out_bounds", "vimco_surrogate"]


def leave_one_out_bounds(log_f: torch.Tensor) -> torch.Tensor:
    """L̂_{−i} = log (1/k)(Σ_{j≠i} f_j + f̂_{−i}) with f̂_{−i} the geometric mean of the others (Mnih & Rezende
    2016, the baseline of Algorithm 1): log f (k, B) -> (k, B)."""
    k = log_f.shape[0]
    geometric = (log_f.sum(0, keepdim=True) - log_f) / (k - 1)                 # log f̂_{−i}           (k, B)
    swapped = log_f.unsqueeze(0).expand(k, -1, -1).clone()                      # row i: log f with    (k, k, B)
    swapped[torch.arange(k), torch.arange(k)] = geometric                       #   f_i → f̂_{−i}
    return torch.logsumexp(swapped, dim=1) - math.log(k)                        # (k, B)


def vimco_surrogate(log_p: torch.Tensor, log_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(surrogate, L̂), both (B,): ∇ surrogate is VIMCO's estimate of ∇ L_k (Mnih & Rezende 2016 Algorithm 1).

    ``log_p`` = log p(x, h⁽ⁱ⁾) and ``log_q`` = log q_φ(h⁽ⁱ⁾|x), (k, B), differentiable in θ and φ at fixed h.
    """
    log_f = log_p - log_q                                                       # log f_i              (k, B)
    bound = logmeanexp(log_f, dim=0)                                            # L̂ (Burda et al. Eq. 8)   (B,)
    signal = (bound.unsqueeze(0) - leave_one_out_bounds(log_f)).detach()       # L̂ − L̂_{−i}           (k, B)
    score = (signal * log_q).sum(0)                                             # Σ_i (L̂ − L̂_{−i}) log q_i
    return bound + score - score.detach(), bound.detach()                       # value L̂; ∇: Eq. 10


class VIMCO(Method):
    """Training method ``vimco``: ascend L_k (k = ``samples`` ≥ 2) with VIMCO's gradient in θ and φ."""

    name = "vimco"
    families = ("bernoulli", "layered-bernoulli")
    validation_description = "k-sample bound L_k of the amortised encoder q_phi (k = the training samples)"

    def __init__(self, model, samples: int = 5):
        super().__init__(model)
        if samples < 2:
            raise ConfigError(f"vimco needs samples >= 2 (its baselines leave one sample out), got {samples}")
        self.samples = samples

    def objective(self, x: torch.Tensor, generator: torch.Generator, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        params = self.model.encode(x)
        h = self.family.draw(params, k, generator).detach()                      # h⁽ⁱ⁾ ~ q_φ, no reparam.  (k, B, K)
        return vimco_surrogate(log_joint(self.model, x, h), self.family.log_prob(params, h))

    def losses(self, x, generator):
        surrogate, bound = self.objective(x, generator, self.samples)
        loss = -surrogate.mean()
        return Losses({"generative": loss, "inference": loss}, bound)

    @torch.no_grad()
    def validation_bound(self, x, num_samples, generator):
        """L̂ with the training k on held-out data (the objective early stopping follows): (B,)."""
        return self.objective(x, generator, self.samples)[1]
