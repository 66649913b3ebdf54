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

The Gaussian variance is σ² = σ²_min + exp(s), s = κ·u with a learned u: the floor σ²_min keeps the
density finite where the data have no spread (MNIST's always-black border pixels would otherwise
drive σ_d² → 0 and log p(x|z) → +∞). The fixed factor κ (`VARIANCE_RATE`) lets an adaptive
optimizer (Adam, RMSprop: steps of about the learning rate in every parameter) move log σ² by κ·lr
per update instead of lr; an output of the decoder moves through its hundreds of incoming weights at
once. With κ = 1 and lr = 10⁻³ the log-variance needs thousands of updates to fall the several
units from the data variance to the residual variance; with κ = 100, tens.
[`GaussianLikelihood.initialise`][varinf.likelihoods.GaussianLikelihood.initialise] starts exp(s) at the training data's variance (per pixel or
pooled over pixels); measured effect in docs/RESULTS.md §12.

A Bernoulli log p(x|z) is the log of a probability (≤ 0); a Gaussian one is the log of a density
(unbounded above, and it changes with the units of x), so the two are not on one scale
(docs/RESULTS.md, "Gaussian likelihood on grey-level MNIST"); ``unit`` and ``unit_note`` say which
(``varinf eval`` writes them into eval.json).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from varinf.errors import ConfigError

__all__ = ["Likelihood", "BernoulliLikelihood", "GaussianLikelihood", "LIKELIHOODS", "make_likelihood",
           "needs_binary_data", "MIN_VARIANCE", "VARIANCE_RATE",
           "bernoulli_log_likelihood"]


def bernoulli_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x|η) = Σ_d [x_d η_d − log(1 + e^{η_d})] for Bernoulli logits η: (..., B, D) with x (B, D) -> (..., B).

    The same number as ``torch.distributions.Bernoulli(logits=η).log_prob(x).sum(-1)`` (the
    binary cross-entropy with logits, x_d log σ(η_d) + (1 − x_d) log σ(−η_d), rewritten with
    log σ(η) = η − softplus(η)), to float rounding. Faster on a CPU: with many draws per datapoint
    the data term Σ_d x_d η_d is a batched matrix product against x instead of the broadcast x (one
    pass fewer over (S, B, D)); with one or two (training) it is the elementwise product, which avoids
    the batched product's per-datapoint cost (``VECDOT_MAX_SAMPLES``); softplus is one fused pass (the
    cross-entropy takes five). It is the elementwise
    part of every decoder pass of the k = 5000 evaluation (benchmarks/bench_eval.py).
    """
    d = x.shape[-1]
    if x.dim() >= 1 and logits.shape[logits.dim() - x.dim():] == x.shape:
        if logits.numel() <= VECDOT_MAX_SAMPLES * x.numel():                      # Σ_d x_d η_d   (..., B)
            data = torch.linalg.vecdot(logits, x)                                 # x broadcast over the draws
        else:
            lead = logits.shape[:logits.dim() - x.dim()]
            x2 = x.reshape(-1, d)                                                 # (B, D)
            eta = logits.reshape(-1, x2.shape[0], d)                              # (S, B, D)
            data = _DataTerm.apply(eta, x2).reshape(*lead, *x.shape[:-1])
    else:                                                                         # x broadcasts otherwise
        data = (logits * x).sum(-1)
    # softplus returns η itself above the threshold; at 40 the dropped e^-η is below float64 rounding
    return data - torch.nn.functional.softplus(logits, threshold=40.0).sum(-1)   # − Σ_d log(1 + e^η)


# The data term Σ_d x_d η_d of S draws per datapoint: a batched product over the B datapoints pays a fixed
# cost per datapoint that only pays off from a few draws on (docs/RESULTS.md §1.1, one thread, B = 100, D = 784,
# µs batched / elementwise: S = 1: 251 / 17; S = 2: 148 / 36; S = 5: 180 / 206; S = 500: 21275 / 87260;
# ``python benchmarks/bench_vae_loop.py --threads 1 --step-breakdown``).
VECDOT_MAX_SAMPLES = 2


class _DataTerm(torch.autograd.Function):
    """Σ_d x_d η_d for η (S, B, D) and x (B, D) -> (S, B): forward a batched product, backward a broadcast one.

    The forward is ``torch.einsum("sbd,bd->sb")`` (one pass over η, what the k = 5000 evaluation needs).
    Autograd's own backward of that einsum is a batched matrix product over B tiny (S×1)·(1×D) blocks,
    which on a CPU costs ≈ 0.3 ms per training step of the Table 1 network (B = 100); ∂/∂η_{sbd} = g_{sb} x_{bd}
    is one product per element, so the broadcast product below gives the same numbers, bit for bit,
    in one pass. The backward is itself differentiable (semi-amortised training differentiates through it).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(logits, x)
        return torch.einsum("sbd,bd->sb", logits, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, x = ctx.saved_tensors
        g = grad.unsqueeze(-1)                                                    # (S, B, 1)
        grad_logits = g * x if ctx.needs_input_grad[0] else None                  # g_sb x_bd   (S, B, D)
        grad_x = (g * logits).sum(0) if ctx.needs_input_grad[1] else None         # Σ_s g_sb η_sbd   (B, D)
        return grad_logits, grad_x


# σ²_min of the Gaussian likelihoods: a standard deviation of ~0.03, 1/32 of the [0, 1] grey-level range.
MIN_VARIANCE = 1e-3
# κ of s = κ·u: how much faster than one parameter of the network log σ² moves under Adam/RMSprop
# (docs/RESULTS.md §12, "A Gaussian run's start": κ = 1, 10, 100 measured).
VARIANCE_RATE = 100.0


class Likelihood(nn.Module):
    """What every observation model provides: log p(x|z) from the decoder output, and E[x|z]."""

    name = ""
    binary_data = False            # True: the data must be binary (or dynamically binarized)
    # what log p(x|z), and so every ELBO and NLL of the model, is the log of; and what it compares with
    unit = "nats of a probability"
    unit_note = "log of the probability of a binary image (<= 0); comparable with other Bernoulli NLLs of the same data"

    def log_prob(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """log p(x|z) = Σ_d log p(x_d|η_d): x (B, D), decoder output η (S, B, D) -> (S, B)."""
        raise NotImplementedError

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        """E[x|z] from the decoder output η: (..., D) -> (..., D)."""
        raise NotImplementedError

    def initialise(self, x: torch.Tensor) -> None:
        """Set the likelihood's own parameters from the training data x (N, D); nothing by default."""

    def extra_repr(self) -> str:
        return self.name


class BernoulliLikelihood(Likelihood):
    """p(x|z) = Π_d Bernoulli(x_d; σ(η_d)) with logits η (Kingma & Welling 2014 App. C.1)."""

    name = "bernoulli"
    binary_data = True

    def log_prob(self, x, out):
        """Σ_d x_d log σ(η_d) + (1 − x_d) log(1 − σ(η_d)) = x·η − Σ_d softplus(η_d): (S, B)
        (``bernoulli_log_likelihood``, the data term as one batched product)."""
        return bernoulli_log_likelihood(out, x)

    def mean(self, out):
        return torch.sigmoid(out)


class GaussianLikelihood(Likelihood):
    """p(x|z) = Π_d N(x_d; η_d, σ_d²), σ_d² = σ²_min + exp(κ u_d) (Kingma & Welling 2014 App. C.2).

    ``per_pixel``: one learned u_d per pixel (``gaussian-pixel``), else one u shared by all
    pixels (``gaussian-global``). u starts at 0 (σ² ≈ 1) until `initialise` sets it from data.
    """

    unit = "nats of a density"
    unit_note = ("log of a density on R^D of the data as scaled (unbounded above; scaling the data by c moves "
                 "it by D log c): not comparable with a Bernoulli likelihood's nats of a probability, nor "
                 "across scalings of the data")

    def __init__(self, data_dim: int, per_pixel: bool, min_variance: float = MIN_VARIANCE):
        super().__init__()
        if not min_variance > 0:
            raise ConfigError(f"min_variance of a Gaussian likelihood must be > 0, got {min_variance!r}")
        self.name = "gaussian-pixel" if per_pixel else "gaussian-global"
        self.min_variance = float(min_variance)
        self.per_pixel = per_pixel
        self.log_var_scaled = nn.Parameter(torch.zeros(data_dim if per_pixel else 1))   # u = s/κ: (D,) or (1,)

    def variance(self) -> torch.Tensor:
        """σ² = σ²_min + exp(κ u): (D,) or (1,)."""
        return self.min_variance + (VARIANCE_RATE * self.log_var_scaled).exp()

    @torch.no_grad()
    def initialise(self, x: torch.Tensor) -> None:
        """exp(κ u) = the training data's variance v: per pixel v_d (``gaussian-pixel``) or the pixels'
        mean variance (``gaussian-global``), floored at σ²_min so that a constant pixel starts finite.

        The variance of the data is that of the best model with a constant mean (the data mean,
        [`varinf.models.VAE.initialise_from_data`][varinf.models.VAE.initialise_from_data]), the decoder's mean at initialisation.
        """
        var = x.var(dim=0, unbiased=False)                                          # (D,)
        if not self.per_pixel:
            var = var.mean().reshape(1)                                             # (1,)
        self.log_var_scaled.copy_(var.clamp_min(self.min_variance).log() / VARIANCE_RATE)

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
