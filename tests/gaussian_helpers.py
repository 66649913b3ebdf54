"""Gaussian helpers on a bare log_joint callable, for the refinement tests (not part of varinf's API)."""

from typing import Callable

import torch
from torch import distributions as D

from varinf.families import GAUSSIAN, Posterior
from varinf.objectives import entropy_bound

LogJoint = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]   # (x (B, D), h (S, B, K)) -> (S, B)


def diag_gaussian(mu: torch.Tensor, log_std: torch.Tensor) -> D.Distribution:
    """q̃(h|x; z) = N(μ, diag σ²) as torch.distributions: batch (B,), event (K,)."""
    return GAUSSIAN.dist(mu, log_std)


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """H(N(μ, diag σ²)) = K/2 (1 + log 2π) + Σ_k log σ_k, shape (B,)."""
    return GAUSSIAN.entropy((None, log_std))


def gaussian_kl(mu_p: torch.Tensor, log_std_p: torch.Tensor, mu_q: torch.Tensor, log_std_q: torch.Tensor
                ) -> torch.Tensor:
    """KL(N(μ_p, σ_p²) ‖ N(μ_q, σ_q²)) for diagonal Gaussians in closed form, shape (B,).

        KL = Σ_k [ log σ_q − log σ_p + (σ_p² + (μ_p − μ_q)²) / (2 σ_q²) − ½ ]

    Hjelm et al. 2015 Eq. 6 with p = q̃ (the refined posterior) and q = q_φ (the encoder).
    """
    return GAUSSIAN.kl((mu_p, log_std_p), (mu_q, log_std_q))


class _LogJointModel:
    """Adapts a bare ``log_joint`` callable to the model interface the refiners take."""

    family = GAUSSIAN

    def __init__(self, fn: LogJoint):
        self.log_joint = fn


def gaussian_bound(log_joint: LogJoint, x: torch.Tensor, mu: torch.Tensor, log_std: torch.Tensor,
                   num_samples: int = 1, generator: torch.Generator | None = None,
                   noise: torch.Tensor | None = None) -> torch.Tensor:
    """Per-datapoint bound (1/N) Σ_n log p(x, μ + σ ⊙ ε⁽ⁿ⁾) + H(q̃), shape (B,).

    ``noise`` (N, B, K) replaces the draw of ε from ``generator`` (common random numbers).
    """
    if noise is None:
        return entropy_bound(_LogJointModel(log_joint), Posterior(GAUSSIAN, (mu, log_std)), x, num_samples, generator)
    return log_joint(x, mu + log_std.exp() * noise).mean(0) + gaussian_entropy(log_std)
