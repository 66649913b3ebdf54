"""Variational autoencoder with diagonal-Gaussian q(z|x), N(0, I) prior and a Bernoulli or Gaussian p(x|z).

Kingma & Welling (2014); Han §III-D (CNN VAE), Patlan §IV and Hjelm et al. 2015 (§3, §7.1: one hidden
layer of 500 softplus units each side, 200 latents — the default here).

The encoder returns the variational parameters as plain tensors ``(mu, log_std)`` so that
they can be optimised per datapoint (iterative refinement, Hjelm et al. 2015 §2); ``VAE.q`` turns
them into a torch.distributions object. The generative model exposes ``prior()``,
``log_likelihood(x, z)`` and ``log_joint(x, z)``, the interface every estimator in
``varinf.objectives`` uses. The observation model p(x|z) is ``VAEConfig.likelihood``
(``varinf.likelihoods``: Bernoulli by default, or Gaussian with a learned global or per-pixel variance).
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass

import torch
from torch import distributions as D
from torch import nn

from varinf.contract import AmortizedModel
from varinf.errors import ConfigError
from varinf.families import GAUSSIAN, StandardNormal
from varinf.likelihoods import LIKELIHOODS, make_likelihood

ACTIVATIONS = {"softplus": nn.Softplus, "relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}
ARCHITECTURES = ("mlp", "cnn")


@dataclass
class VAEConfig:
    """Architecture of a VAE. Defaults: Hjelm et al. 2015 Table 1 (784-500-200, softplus)."""

    data_dim: int = 784
    latent_dim: int = 200
    architecture: str = "mlp"
    hidden: tuple[int, ...] = (500,)
    activation: str = "softplus"
    image_shape: tuple[int, int] | None = None
    channels: tuple[int, ...] = (32, 64)
    likelihood: str = "bernoulli"         # p(x|z): a key of varinf.likelihoods.LIKELIHOODS

    def __post_init__(self):
        self.hidden = tuple(int(h) for h in self.hidden)
        self.channels = tuple(int(c) for c in self.channels)
        if self.image_shape is not None:
            self.image_shape = tuple(int(s) for s in self.image_shape)
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"unknown model architecture {self.architecture!r}; choose one of {ARCHITECTURES}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.activation!r}; choose one of {tuple(ACTIVATIONS)}")
        if self.likelihood not in LIKELIHOODS:
            raise ConfigError(f"unknown likelihood {self.likelihood!r}; choose one of {tuple(LIKELIHOODS)}")
        if self.latent_dim < 1:
            raise ConfigError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if self.architecture == "cnn":
            if self.image_shape is None:
                raise ConfigError("the cnn architecture needs image data (an image_shape such as (28, 28)); "
                                  "this dataset is flat vectors: use --model mlp")
            if self.image_shape[0] * self.image_shape[1] != self.data_dim:
                raise ConfigError(f"image_shape {self.image_shape} does not match data_dim {self.data_dim}")

    def to_dict(self) -> dict:
        return asdict(self)


def _mlp(sizes: list[int], activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """x (B, D) -> (mu, log_std), each (B, K)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.net = _mlp([cfg.data_dim, *cfg.hidden, 2 * cfg.latent_dim], cfg.activation)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_std = self.net(x).chunk(2, dim=-1)
        return mu, log_std


class MLPDecoder(nn.Module):
    """z (..., K) -> the likelihood's parameters η (..., D): Bernoulli logits or Gaussian means."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.net = _mlp([cfg.latent_dim, *reversed(cfg.hidden), cfg.data_dim], cfg.activation)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # (S, B, K) flattened to (S·B, K): each layer is then one fused matrix product plus bias (addmm)
        return self.net(z.reshape(-1, z.shape[-1])).reshape(*z.shape[:-1], -1)

    @torch.no_grad()
    def shift_output(self, delta: torch.Tensor) -> None:
        """η(z) += δ for every z: the output layer's bias (one per pixel) moves by δ (D,)."""
        self.net[-1].bias.add_(delta)


def _in_place(act: type[nn.Module]) -> nn.Module:
    """The activation writing into its input where torch offers that (ReLU, ELU): one memory pass fewer."""
    return act(inplace=True) if "inplace" in inspect.signature(act).parameters else act()


def _downsamplings(size: int) -> int:
    """Number of stride-2 halvings that keep the side integral and ≥ 4 (28→14→7: 2; 8→4: 1)."""
    n = 0
    while size % 2 == 0 and size // 2 >= 4 and n < 2:
        size //= 2
        n += 1
    return n


class ConvEncoder(nn.Module):
    """Convolutional encoder (Han §III-D, Patlan §V): 3×3 conv, then stride-2 4×4 convs, then MLP."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        h, w = cfg.image_shape
        n_down = min(_downsamplings(h), _downsamplings(w))
        act = ACTIVATIONS[cfg.activation]
        chans = list(cfg.channels)
        layers: list[nn.Module] = [nn.Conv2d(1, chans[0], 3, 1, 1), act()]
        c = chans[0]
        for i in range(n_down):
            c_out = chans[min(i + 1, len(chans) - 1)]
            layers += [nn.Conv2d(c, c_out, 4, 2, 1), act()]
            c = c_out
        self.image_shape = (h, w)
        self.conv = nn.Sequential(*layers)
        flat = c * (h >> n_down) * (w >> n_down)
        self.head = _mlp([flat, *cfg.hidden, 2 * cfg.latent_dim], cfg.activation)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.conv(x.reshape(-1, 1, *self.image_shape)).flatten(1)
        mu, log_std = self.head(feats).chunk(2, dim=-1)
        return mu, log_std


class ConvDecoder(nn.Module):
    """Mirror of ConvEncoder with transposed convolutions: z (..., K) -> η (..., D) (logits or means)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        h, w = cfg.image_shape
        n_down = min(_downsamplings(h), _downsamplings(w))
        act = ACTIVATIONS[cfg.activation]
        chans = list(cfg.channels)
        widths = [chans[min(i + 1, len(chans) - 1)] for i in range(n_down)]
        c = widths[-1] if widths else chans[0]
        self.start = (c, h >> n_down, w >> n_down)
        self.head = nn.Sequential(_mlp([cfg.latent_dim, *reversed(cfg.hidden), c * self.start[1] * self.start[2]],
                                       cfg.activation), act())
        layers: list[nn.Module] = []
        for i in reversed(range(n_down)):
            c_out = chans[i]
            layers += [nn.ConvTranspose2d(c, c_out, 4, 2, 1), _in_place(act)]
            c = c_out
        layers.append(nn.Conv2d(c, 1, 3, 1, 1))
        self.deconv = nn.Sequential(*layers)
        self.data_dim = h * w

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        feats = self.head(z.reshape(-1, z.shape[-1])).reshape(-1, *self.start)           # (N, C, h, w)
        # channels-last (NHWC) activations: the transposed convolutions run ≈ 2× faster on a CPU in
        # the k-sample evaluation's large batches, training speed unchanged (benchmarks/bench_cnn.py)
        feats = feats.contiguous(memory_format=torch.channels_last)
        return self.deconv(feats).reshape(*lead, self.data_dim)

    @torch.no_grad()
    def shift_output(self, delta: torch.Tensor) -> None:
        """η(z) += mean_d δ_d for every z: the last convolution has one bias for all pixels."""
        self.deconv[-1].bias.add_(delta.mean())


class VAE(AmortizedModel):
    """Generative model p(x, z) = p(z) p(x|z) with an amortised Gaussian encoder q_φ(z|x).

    Code name ↔ paper symbol: ``x`` = v (Goodfellow et al. 2016) = x (Hjelm et al. 2015); ``z`` = h; encoder = q_φ
    (recognition network); decoder = p_θ(x|h) (generation network); ``(mu, log_std)`` = the
    variational parameters z of Hjelm et al. 2015 Eq. 2 (there written z = (μ, σ)).
    """

    family = GAUSSIAN

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.config = cfg
        if cfg.architecture == "mlp":
            self.encoder, self.decoder = MLPEncoder(cfg), MLPDecoder(cfg)
        else:
            self.encoder, self.decoder = ConvEncoder(cfg), ConvDecoder(cfg)
        self.likelihood = make_likelihood(cfg.likelihood, cfg.data_dim)       # p(x|z); its parameters are θ
        self.register_buffer("_prior_loc", torch.zeros(cfg.latent_dim), persistent=False)
        self._prior: tuple[torch.Tensor, StandardNormal] | None = None      # (the buffer it was made for, p(z))

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @torch.no_grad()
    def initialise_from_data(self, x: torch.Tensor) -> None:
        """Start a Gaussian p(x|z) where the data are: the decoder mean at the prior's mode, η(0), is
        the training data mean x̄ (per pixel for the mlp; the pixels' mean for the cnn, whose last
        convolution has one bias), and the variance is the data's (``GaussianLikelihood.initialise``).

        A Bernoulli p(x|z) is left as constructed (its runs are unchanged by this method). ``varinf
        train`` calls it on the training split of a new run; x (N, D).
        """
        if self.likelihood.binary_data:
            return
        zero = self._prior_loc.unsqueeze(0)                                        # (1, K): z = 0
        self.decoder.shift_output(x.mean(0) - self.decode(zero)[0])                # δ = x̄ − η(0): (D,)
        self.likelihood.initialise(x)

    # ---- inference network q_φ(z|x) -------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Variational parameters (mu, log_std), each (B, K), as plain tensors."""
        return self.encoder(x)

    # ---- generative model p_θ(x, z) -------------------------------------------------
    def prior(self) -> D.Distribution:
        """p(z) = N(0, I_K), made once per device and dtype of the model (every training step reads it)."""
        if self._prior is None or self._prior[0] is not self._prior_loc:                 # new after .to(...)
            self._prior = (self._prior_loc, StandardNormal(self._prior_loc))
        return self._prior[1]

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x, z) = log p(x|z) + log N(z; 0, I): (S, B) (the prior's density in one pass over z)."""
        return self.log_likelihood(x, z) + GAUSSIAN.standard_log_prob(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The likelihood's parameters η of p(x|z) (Bernoulli logits or Gaussian means): z (..., K) -> (..., D)."""
        return self.decoder(z)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) = Σ_d log p(x_d|η_d) of the configured likelihood: x (B, D), z (S, B, K) -> (S, B)."""
        return self.likelihood.log_prob(x, self.decode(z))                      # η: (S, B, D)

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x|z]: z (..., K) -> (..., D)."""
        return self.likelihood.mean(self.decode(z))

    @torch.no_grad()
    def sample(self, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decoder means E[x|z] for z ~ p(z): (num, D)."""
        z = torch.randn(num, self.latent_dim, generator=generator, device=self._prior_loc.device)
        return self.decode_mean(z)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["VAE", "VAEConfig", "MLPEncoder", "MLPDecoder", "ConvEncoder", "ConvDecoder", "ACTIVATIONS",
           "ARCHITECTURES", "count_parameters"]
