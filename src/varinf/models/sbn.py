"""Sigmoid belief network (SBN) with binary latents and a factorial Bernoulli q(h|x).

Hjelm et al. 2015 §5 and §7.2 (Table 2): K binary latents h ∈ {0,1}^K (K = 200 in the paper) with a
factorial Bernoulli prior p(h) = Π_k σ(a_k)^{h_k} σ(−a_k)^{1−h_k} (learned logits a), a
Bernoulli decoder p(x|h) whose logits are a linear map of h (784–200) or an MLP with one
deterministic layer (the paper's "(240)" rows: 240 softplus units), and an encoder
q_φ(h|x) = Π_k Bernoulli(h_k; σ(ℓ_k(x))), linear or with the same deterministic layer.

Deep SBNs (Neal 1992; Mnih & Gregor 2014; Mnih & Rezende 2016; Yin & Zhou 2019): with
``latent_dim`` = (K₁, …, K_L) there are L stochastic layers, h_L on top with the factorial prior,

    p(x, h) = p(h_L) Π_{l<L} p(h_l | h_{l+1}) p(x | h₁),   p(h_l | h_{l+1}) = Π_k Bernoulli(σ(g_{l+1}(h_{l+1}))),
    q(h|x)  = q(h₁|x) Π_{l>1} q(h_l | h_{l−1}),           q(h_l | h_{l−1}) = Π_k Bernoulli(σ(f_l(h_{l−1}))),

where each g and f is linear (``hidden`` = ()) or an MLP with the ``hidden`` deterministic layers between
two stochastic layers. h is passed around as the concatenation (h₁, …, h_L), (S, B, K₁ + … + K_L); the
encoder's family is :class:`varinf.families.LayeredBernoulli` (it samples layer by layer). With one
layer everything is the one-layer SBN above (the same parameters, names and family).

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
from varinf.families import BERNOULLI, LayeredBernoulli
from varinf.likelihoods import BernoulliLikelihood
from varinf.models.vae import ACTIVATIONS, _mlp

__all__ = ["SBN", "SBNConfig"]


@dataclass
class SBNConfig:
    """Architecture of an SBN. ``hidden`` empty = linear encoder and decoder (Hjelm et al. 2015 Table 2, 784–200).

    ``latent_dim``: K for one stochastic layer, or the widths (K₁, …, K_L) of L ≥ 2 layers, bottom (next
    to x) first, e.g. (200, 200, 200) for the 784–200–200–200 SBN of Mnih & Rezende (2016).
    ``hidden``: deterministic layers between two stochastic layers (and between x and h₁).
    """

    data_dim: int = 784
    latent_dim: int | tuple[int, ...] = 200
    hidden: tuple[int, ...] = ()
    activation: str = "softplus"

    def __post_init__(self):
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.activation!r}; choose one of {tuple(ACTIVATIONS)}")
        if isinstance(self.latent_dim, (list, tuple)):
            widths = tuple(int(k) for k in self.latent_dim)
            self.latent_dim = widths[0] if len(widths) == 1 else widths
            if not widths or any(k < 1 for k in widths):
                raise ConfigError(f"latent_dim must be an integer >= 1 or a list of them, got {list(widths)}")
        elif self.latent_dim < 1:
            raise ConfigError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"hidden widths must be >= 1 (an empty list means linear), got {list(self.hidden)}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        if isinstance(self.latent_dim, tuple):
            d["latent_dim"] = list(self.latent_dim)
        return d

    @property
    def widths(self) -> tuple[int, ...]:
        """(K₁, …, K_L), the stochastic layers' widths; (K,) for one layer."""
        return self.latent_dim if isinstance(self.latent_dim, tuple) else (self.latent_dim,)


class SBN(AmortizedModel):
    """p(x, h) = p(h) p(x|h) with binary h and an amortised factorial Bernoulli encoder q_φ(h|x)."""

    family = BERNOULLI

    def __init__(self, cfg: SBNConfig):
        super().__init__()
        self.config = cfg
        widths = cfg.widths
        self.encoder = _mlp([cfg.data_dim, *cfg.hidden, widths[0]], cfg.activation)             # f₁: x → α₁
        self.decoder = _mlp([widths[0], *reversed(cfg.hidden), cfg.data_dim], cfg.activation)   # h₁ → logits of x
        # deep SBN only: f_l: h_{l−1} → α_l (encoder) and g_l: h_l → logits of h_{l−1} (decoder), l = 2…L
        self.upper_encoders = nn.ModuleList(_mlp([a, *cfg.hidden, b], cfg.activation)
                                            for a, b in zip(widths, widths[1:]))
        self.upper_decoders = nn.ModuleList(_mlp([b, *reversed(cfg.hidden), a], cfg.activation)
                                            for a, b in zip(widths, widths[1:]))
        self.prior_logits = nn.Parameter(torch.zeros(widths[-1]))                 # p(h_L), the top layer
        self.likelihood = BernoulliLikelihood()                                   # p(x|h₁), no parameters
        if len(widths) > 1:
            self.family = LayeredBernoulli(widths, self._upper_logits)

    @property
    def latent_dim(self) -> int:
        """K, all stochastic units together (K₁ + … + K_L for a deep SBN)."""
        return sum(self.config.widths)

    @property
    def widths(self) -> tuple[int, ...]:
        return self.config.widths

    def _upper_logits(self, l: int, below: torch.Tensor) -> torch.Tensor:
        """α_{l+1} = f_{l+1}(h_l): the encoder's logits of layer l + 1 (counting from 0) given layer l."""
        return self.upper_encoders[l - 1](below)

    def inference_parameters(self) -> list[nn.Parameter]:
        """φ: the encoder networks f₁, …, f_L."""
        return [*self.encoder.parameters(), *self.upper_encoders.parameters()]

    # ---- inference network q_φ(h|x) -------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        """Variational parameters (logits,), (B, K): q(h_k = 1|x) = σ(logits_k)."""
        return (self.encoder(x),)

    # ---- generative model p_θ(x, h) -------------------------------------------------
    def prior(self) -> D.Distribution:
        """p(h) of a one-layer SBN, factorial Bernoulli. A deep SBN's p(h) is not factorial: it refuses
        (its log p(h) is in :meth:`log_joint`, its draws in :meth:`sample_latents`)."""
        if len(self.widths) > 1:
            raise ConfigError(f"the {len(self.widths)}-layer SBN's prior p(h) is not a factorial distribution; "
                              "use log_joint(x, h) or sample_latents(num)")
        return BERNOULLI.dist(self.prior_logits)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of p(x|h): h (..., K) -> (..., D). h may be relaxed (mean-pass, ST)."""
        return self.decoder(h)

    def log_likelihood(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """log p(x|h₁): x (B, D), h (S, B, K) -> (S, B) (a deep SBN's h holds every layer; x sees h₁)."""
        return self.likelihood.log_prob(x, self.decode(h[..., :self.widths[0]]))

    def log_joint(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """log p(x, h) = log p(x|h₁) + Σ_{l<L} log p(h_l|h_{l+1}) + log p(h_L): (S, B). h may be relaxed."""
        layers = torch.split(h, self.widths, dim=-1)
        total = self.log_likelihood(x, h) + BERNOULLI.log_prob((self.prior_logits,), layers[-1])   # x|h₁, h_L
        for g, below, above in zip(self.upper_decoders, layers, layers[1:]):
            total = total + BERNOULLI.log_prob((g(above),), below)                                 # h_l|h_{l+1}
        return total

    def decode_mean(self, h: torch.Tensor) -> torch.Tensor:
        """E[x|h] = σ(logits): h (..., K) -> (..., D)."""
        return self.likelihood.mean(self.decode(h))

    @torch.no_grad()
    def sample_latents(self, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Ancestral h ~ p(h_L) Π p(h_l|h_{l+1}), top layer first: (num, K), binary, layers concatenated."""
        p = torch.sigmoid(self.prior_logits).expand(num, -1)
        layers = [torch.bernoulli(p, generator=generator)]
        for g in reversed(self.upper_decoders):
            layers.insert(0, torch.bernoulli(torch.sigmoid(g(layers[0])), generator=generator))
        return torch.cat(layers, -1)

    @torch.no_grad()
    def sample_joint(self, num: int, generator: torch.Generator | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Ancestral samples (h, x) ~ p(h) p(x|h): (num, K) and (num, D), both binary."""
        h = self.sample_latents(num, generator)
        x = torch.bernoulli(self.decode_mean(h[..., :self.widths[0]]), generator=generator)
        return h, x

    @torch.no_grad()
    def sample(self, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decoder means E[x|h₁] for h ~ p(h): (num, D)."""
        return self.decode_mean(self.sample_latents(num, generator)[..., :self.widths[0]])
