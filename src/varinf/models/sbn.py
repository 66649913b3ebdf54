"""Sigmoid belief network (SBN) with binary latents and a factorial Bernoulli q(h|x).

Seed 003 §5 and §7.2 (Table 2): K binary latents h ∈ {0,1}^K (K = 200 in the paper) with a
factorial Bernoulli prior p(h) = Π_k σ(a_k)^{h_k} σ(−a_k)^{1−h_k} (learned logits a), a
Bernoulli decoder p(x|h) whose logits are a linear map of h (784–200) or an MLP with one
deterministic layer (the paper's "(240)" rows: 240 softplus units), and an encoder
q_φ(h|x) = Π_k Bernoulli(h_k; σ(ℓ_k(x))), linear or with the same deterministic layer.

The interface mirrors ``varinf.models.VAE`` so that ``varinf.objectives`` and
``varinf.evaluate`` work unchanged: ``encode(x) -> (logits,)``, ``q(logits)``, ``prior()``,
``log_likelihood(x, h)``, ``log_joint(x, h)``, ``decode(h)``, ``sample(num, generator)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import distributions as D
from torch import nn

from varinf.contract import AmortizedModel
from varinf.errors import ConfigError
from varinf.families import BERNOULLI
from varinf.objectives import bernoulli_log_likelihood
from varinf.models.vae import ACTIVATIONS, _mlp

__all__ = ["SBN", "SBNConfig"]


@dataclass
class SBNConfig:
    """Architecture of an SBN. ``hidden`` empty = linear encoder and decoder (seed 003 Table 2, 784–200)."""

    data_dim: int = 784
    latent_dim: int = 200
    hidden: tuple[int, ...] = ()
    activation: str = "softplus"

    def __post_init__(self):
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.activation!r}; choose one of {tuple(ACTIVATIONS)}")
        if self.latent_dim < 1:
            raise ConfigError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"hidden widths must be >= 1 (an empty list means linear), got {list(self.hidden)}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


class SBN(AmortizedModel):
    """p(x, h) = p(h) p(x|h) with binary h and an amortised factorial Bernoulli encoder q_φ(h|x)."""

    family = BERNOULLI

    def __init__(self, cfg: SBNConfig):
        super().__init__()
        self.config = cfg
        self.encoder = _mlp([cfg.data_dim, *cfg.hidden, cfg.latent_dim], cfg.activation)
        self.decoder = _mlp([cfg.latent_dim, *reversed(cfg.hidden), cfg.data_dim], cfg.activation)
        self.prior_logits = nn.Parameter(torch.zeros(cfg.latent_dim))

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    # ---- inference network q_φ(h|x) -------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        """Variational parameters (logits,), (B, K): q(h_k = 1|x) = σ(logits_k)."""
        return (self.encoder(x),)

    # ---- generative model p_θ(x, h) -------------------------------------------------
    def prior(self) -> D.Distribution:
        return BERNOULLI.dist(self.prior_logits)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of p(x|h): h (..., K) -> (..., D). h may be relaxed (mean-pass, ST)."""
        return self.decoder(h)

    def log_likelihood(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """log p(x|h): x (B, D), h (S, B, K) -> (S, B)."""
        return bernoulli_log_likelihood(self.decode(h), x)

    @torch.no_grad()
    def sample_joint(self, num: int, generator: torch.Generator | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Ancestral samples (h, x) ~ p(h) p(x|h): (num, K) and (num, D), both binary."""
        p = torch.sigmoid(self.prior_logits).expand(num, -1)
        h = torch.bernoulli(p, generator=generator)
        x = torch.bernoulli(torch.sigmoid(self.decode(h)), generator=generator)
        return h, x

    @torch.no_grad()
    def sample(self, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decoder means E[x|h] for h ~ p(h): (num, D)."""
        p = torch.sigmoid(self.prior_logits).expand(num, -1)
        return torch.sigmoid(self.decode(torch.bernoulli(p, generator=generator)))
