"""DisARM: ARM with the augmentation integrated out (Dong, Mnih & Tucker 2020).

Given the antithetic pair b = 1[u < σ(α)], b̃ = 1[1 − u < σ(α)] of ARM (``varinf.infer.arm``),
Dong et al. take the conditional expectation of ARM's estimate given (b, b̃), which removes the
noise of u itself (the DisARM estimator for a K-dimensional b):

    g_DisARM,k = ½ (f(b̃) − f(b)) (−1)^{b_k} 1[b_k ≠ b̃_k] σ(|α_k|)

(with b = b₂ and b̃ = b₁ of the authors' code this is their ½ (f(b₁) − f(b₂)) 1[b₁ ≠ b₂] (−1)^{b₂} σ(|α|)).
Unbiased, never more variance than ARM per unit, zero where the pair agrees. The multi-layer
treatment, the θ-gradient and ``samples`` are ARM's (:class:`varinf.infer.arm.Antithetic`).
"""

from __future__ import annotations

import torch

from varinf.infer.arm import Antithetic

__all__ = ["DisARM", "disarm_coefficient"]


def disarm_coefficient(f_anti: torch.Tensor, f_base: torch.Tensor, u: torch.Tensor, alpha: torch.Tensor,
                       base: torch.Tensor, anti: torch.Tensor) -> torch.Tensor:
    """g = ½ (f(b̃) − f(b)) (−1)^b 1[b ≠ b̃] σ(|α|) (Dong, Mnih & Tucker 2020, DisARM): f (S, B); the rest (S, B, K)."""
    sign = 1 - 2 * base                                                          # (−1)^b
    differ = (base != anti).to(alpha.dtype)                                      # 1[b ≠ b̃]
    return 0.5 * (f_anti - f_base).unsqueeze(-1) * sign * differ * torch.sigmoid(alpha.abs())


class DisARM(Antithetic):
    """Training method ``disarm``: the DisARM estimator, layer by layer on a deep SBN."""

    name = "disarm"
    coefficient = staticmethod(disarm_coefficient)
