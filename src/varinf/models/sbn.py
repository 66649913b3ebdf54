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
import torch.nn.functional as F
from torch import distributions as D
from torch import nn

from varinf.errors import ConfigError
from varinf.models.vae import ACTIVATIONS, _mlp

__all__ = ["SBN", "SBNConfig", "bernoulli_q", "expected_log_prior", "encoder_elbo"]


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


def bernoulli_q(logits: torch.Tensor | None = None, probs: torch.Tensor | None = None) -> D.Distribution:
    """Factorial Bernoulli with batch (B,), event (K,), from logits or probabilities."""
    base = D.Bernoulli(probs=probs, logits=logits, validate_args=False)
    return D.Independent(base, 1, validate_args=False)


def expected_log_prior(prior_logits: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """E_q[log p(h)] = Σ_k μ_k log σ(a_k) + (1 − μ_k) log σ(−a_k), exact for factorial q: (..., K) -> (...)."""
    return -F.binary_cross_entropy_with_logits(prior_logits.expand_as(mu), mu, reduction="none").sum(-1)


class SBN(nn.Module):
    """p(x, h) = p(h) p(x|h) with binary h and an amortised factorial Bernoulli encoder q_φ(h|x)."""

    def __init__(self, cfg: SBNConfig):
        super().__init__()
        self.config = cfg
        self.encoder = _mlp([cfg.data_dim, *cfg.hidden, cfg.latent_dim], cfg.activation)
        self.decoder = _mlp([cfg.latent_dim, *reversed(cfg.hidden), cfg.data_dim], cfg.activation)
        self.prior_logits = nn.Parameter(torch.zeros(cfg.latent_dim))

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def generative_parameters(self) -> list[nn.Parameter]:
        """θ: decoder weights and the prior logits."""
        return [*self.decoder.parameters(), self.prior_logits]

    def inference_parameters(self) -> list[nn.Parameter]:
        """φ: encoder weights."""
        return list(self.encoder.parameters())

    # ---- inference network q_φ(h|x) -------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        """Variational parameters (logits,), (B, K): q(h_k = 1|x) = σ(logits_k)."""
        return (self.encoder(x),)

    @staticmethod
    def q(logits: torch.Tensor) -> D.Distribution:
        return bernoulli_q(logits=logits)

    # ---- generative model p_θ(x, h) -------------------------------------------------
    def prior(self) -> D.Distribution:
        return bernoulli_q(logits=self.prior_logits)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of p(x|h): h (..., K) -> (..., D). h may be relaxed (mean-pass, ST)."""
        return self.decoder(h)

    def log_likelihood(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """log p(x|h): x (B, D), h (S, B, K) -> (S, B)."""
        logits = self.decode(h)
        return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)

    def log_prior(self, h: torch.Tensor) -> torch.Tensor:
        """log p(h): (..., K) -> (...)."""
        return expected_log_prior(self.prior_logits, h)

    def log_joint(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """log p(x, h) = log p(x|h) + log p(h): (S, B)."""
        return self.log_likelihood(x, h) + self.log_prior(h)

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


@torch.no_grad()
def encoder_elbo(model, x: torch.Tensor, num_samples: int, generator: torch.Generator | None) -> torch.Tensor:
    """Monte Carlo ELBO of the amortised q_φ(h|x), (1/S) Σ_s log p(x, h_s) − log q(h_s|x): shape (B,)."""
    from varinf.objectives import log_weights
    return log_weights(model, model.q(*model.encode(x)), x, num_samples, generator).mean(0)
