"""Observation models p(x|z): the per-pixel maths of a decoder's output, written once.

A likelihood turns what a decoder outputs, η = decoder(z) of shape (S, B, D), into log p(x|z) and into
the decoder mean E[x|z] (what ``sample`` and the figures show). It is an ``nn.Module`` so that a
likelihood with parameters of its own (the Gaussian's log-variance) keeps them in the model: they are
generative parameters θ, trained and checkpointed with the decoder.

    ====================  =====================  ===============================  ========================
    name                  decoder output η       p(x_d|z)                         data it accepts
    ====================  =====================  ===============================  ========================
    bernoulli             logits                 Bernoulli(σ(η_d))                binary, or grey levels
                                                                                  with dynamic binarization
    gaussian-global       means                  N(η_d, σ²), one learned σ²       any finite values
    gaussian-pixel        means                  N(η_d, σ_d²), σ_d² per pixel     any finite values
    ====================  =====================  ===============================  ========================

The Gaussian variance is σ² = σ²_min + exp(s) with a learned s: the floor σ²_min keeps the density
finite where the data have no spread (MNIST's always-black border pixels would otherwise drive
σ_d² → 0 and log p(x|z) → +∞). A Bernoulli log p(x|z) is the log of a probability (≤ 0); a
Gaussian one is the log of a density (unbounded above, and it changes with the units of x), so
the two are not on one scale (docs/RESULTS.md, "Gaussian likelihood on grey-level MNIST").
"""

from __future__ import annotations

import math

import torch
from torch import nn

from varinf.errors import ConfigError
from varinf.objectives import bernoulli_log_likelihood

__all__ = ["Likelihood", "BernoulliLikelihood", "GaussianLikelihood", "LIKELIHOODS", "make_likelihood",
           "needs_binary_data", "MIN_VARIANCE"]

# σ²_min of the Gaussian likelihoods: a standard deviation of ~0.03, 1/32 of the [0, 1] grey-level range.
MIN_VARIANCE = 1e-3


class Likelihood(nn.Module):
    """What every observation model provides: log p(x|z) from the decoder output, and E[x|z]."""

    name = ""
    binary_data = False            # True: the data must be binary (or dynamically binarized)

    def log_prob(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """log p(x|z) = Σ_d log p(x_d|η_d): x (B, D), decoder output η (S, B, D) -> (S, B)."""
        raise NotImplementedError

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        """E[x|z] from the decoder output η: (..., D) -> (..., D)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return self.name


class BernoulliLikelihood(Likelihood):
    """p(x|z) = Π_d Bernoulli(x_d; σ(η_d)) with logits η (Kingma & Welling 2014 App. C.1)."""

    name = "bernoulli"
    binary_data = True

    def log_prob(self, x, out):
        """Σ_d x_d log σ(η_d) + (1 − x_d) log(1 − σ(η_d)) = x·η − Σ_d softplus(η_d): (S, B)
        (``varinf.objectives.bernoulli_log_likelihood``, the data term as one batched product)."""
        return bernoulli_log_likelihood(out, x)

    def mean(self, out):
        return torch.sigmoid(out)


class GaussianLikelihood(Likelihood):
    """p(x|z) = Π_d N(x_d; η_d, σ_d²), σ_d² = σ²_min + exp(s_d) (Kingma & Welling 2014 App. C.2).

    ``per_pixel``: one learned s_d per pixel (``gaussian-pixel``), else one s shared by all
    pixels (``gaussian-global``). s starts at 0 (σ² ≈ 1).
    """

    def __init__(self, data_dim: int, per_pixel: bool, min_variance: float = MIN_VARIANCE):
        super().__init__()
        if not min_variance > 0:
            raise ConfigError(f"min_variance of a Gaussian likelihood must be > 0, got {min_variance!r}")
        self.name = "gaussian-pixel" if per_pixel else "gaussian-global"
        self.min_variance = float(min_variance)
        self.log_var_excess = nn.Parameter(torch.zeros(data_dim if per_pixel else 1))   # s: (D,) or (1,)

    def variance(self) -> torch.Tensor:
        """σ² = σ²_min + exp(s): (D,) or (1,)."""
        return self.min_variance + self.log_var_excess.exp()

    def log_prob(self, x, out):
        """Σ_d −½ [log 2πσ_d² + (x_d − η_d)² / σ_d²]: (S, B)."""
        var = self.variance()                                                       # (D,) or (1,)
        return -0.5 * (math.log(2 * math.pi) + var.log() + (x - out).pow(2) / var).sum(-1)

    def mean(self, out):
        return out


LIKELIHOODS = {
    "bernoulli": lambda data_dim: BernoulliLikelihood(),
    "gaussian-global": lambda data_dim: GaussianLikelihood(data_dim, per_pixel=False),
    "gaussian-pixel": lambda data_dim: GaussianLikelihood(data_dim, per_pixel=True),
}


def make_likelihood(name: str, data_dim: int) -> Likelihood:
    """The likelihood called ``name`` (a key of `LIKELIHOODS`) for data of dimension D."""
    if name not in LIKELIHOODS:
        raise ConfigError(f"likelihood must be one of {list(LIKELIHOODS)}, got {name!r}")
    return LIKELIHOODS[name](data_dim)


def needs_binary_data(name: str) -> bool:
    """Whether likelihood ``name`` needs binary data (or grey levels with dynamic binarization)."""
    return make_likelihood(name, 1).binary_data
