"""Training settings: one dataclass, filled from defaults, a TOML file and command-line flags."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from varinf.errors import ConfigError

ESTIMATORS = ("A", "B")
OPTIMIZERS = ("adam", "rmsprop")
DEVICES = ("cpu", "cuda")
REFINE_OPTIMIZERS = ("sgd", "adam")
REFINING_METHODS = ("gbvi", "savae", "avi")   # methods that refine q in training and need refine_steps >= 1
MODELS = ("mlp", "cnn", "sbn")
SBN_METHODS = ("mean-pass", "straight-through", "avi", "wake-sleep", "nvil", "reinforce")


@dataclass
class TrainConfig:
    """Everything that defines a training run. Defaults: seed 003 Table 1's VAE (784-500-200 softplus)."""

    # data
    dataset: str = "digits"
    data_dir: str | None = None
    binarize: bool | None = None          # mnist: dynamic binarization (fresh Bernoulli draw per batch)
    # model
    model: str = "mlp"                    # mlp | cnn (VAE) | sbn (sigmoid belief network; hidden = () is linear)
    latent_dim: int = 200
    hidden: tuple[int, ...] = (500,)
    activation: str = "softplus"
    channels: tuple[int, ...] = (32, 64)
    # inference and learning
    method: str = "vae"
    estimator: str = "B"                  # SGVB estimator A or B (seed 002 §IV)
    samples: int = 1                      # L, samples per datapoint
    optimizer: str = "adam"
    lr: float = 1e-3
    warmup_steps: int = 0                 # linear learning-rate warm-up over the first W optimizer steps
    batch_size: int = 100
    epochs: int = 100
    patience: int | None = 20             # early stopping on the validation bound; None disables it
    valid_samples: int = 1                # samples per datapoint for the per-epoch validation bound
    # iterative refinement of q (seed 003 §2; methods gbvi and savae; varinf eval --refine-steps)
    refine_steps: int = 0                 # T, gradient steps on the variational parameters per E-step
    inference_rate: float = 5e-3          # γ, the step size of the refinement (seed 003 Eq. 4; not given there)
    refine_optimizer: str = "sgd"         # sgd: plain steps (Eq. 4) | adam: adaptive per-parameter steps
    refine_samples: int = 20              # N, reparameterised samples per refinement step (Eq. 5)
    avi_rate: float = 1.0                 # γ of AVI's step μ ← (1−γ)μ + γ Σ w̃ h; 1 is seed 003 Eq. 9
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None            # torch intra-op threads (None: torch's default)

    def __post_init__(self):
        self.hidden = tuple(int(h) for h in (self.hidden if isinstance(self.hidden, (list, tuple)) else [self.hidden]))
        self.channels = tuple(int(c) for c in self.channels)
        self.estimator = str(self.estimator).upper()
        self.optimizer = str(self.optimizer).lower()
        self.refine_optimizer = str(self.refine_optimizer).lower()
        is_sbn = self.model == "sbn"
        checks = [
            (self.model in MODELS, f"model must be one of {MODELS}, got {self.model!r}"),
            (not is_sbn or self.method in SBN_METHODS,
             f"method {self.method!r} is for Gaussian latents; a sigmoid belief network (--model sbn) "
             f"trains with one of {SBN_METHODS}"),
            (is_sbn or self.method not in SBN_METHODS,
             f"method {self.method!r} trains binary latents and needs --model sbn (model is {self.model!r})"),
            (self.estimator in ESTIMATORS, f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}"),
            (self.device.split(":")[0] in DEVICES, f"device must be cpu or cuda[:N], got {self.device!r}"),
            (self.samples >= 1, f"samples must be >= 1, got {self.samples}"),
            (self.valid_samples >= 1, f"valid_samples must be >= 1, got {self.valid_samples}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.epochs >= 0, f"epochs must be >= 0, got {self.epochs}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}"),
            (self.latent_dim >= 1, f"latent_dim must be >= 1, got {self.latent_dim}"),
            (self.refine_steps >= 0, f"refine_steps must be >= 0, got {self.refine_steps}"),
            (self.method not in REFINING_METHODS or self.refine_steps >= 1,
             f"method {self.method!r} refines q in every E-step and needs refine_steps >= 1 "
             f"(--refine-steps; seed 003's GBVI_20 uses 20), got {self.refine_steps}"),
            (self.inference_rate > 0, f"inference_rate must be > 0, got {self.inference_rate}"),
            (self.refine_optimizer in REFINE_OPTIMIZERS,
             f"refine_optimizer must be one of {REFINE_OPTIMIZERS}, got {self.refine_optimizer!r}"),
            (self.refine_samples >= 1, f"refine_samples must be >= 1, got {self.refine_samples}"),
            (0 < self.avi_rate <= 1, f"avi_rate must be in (0, 1], got {self.avi_rate}"),
            (self.patience is None or self.patience >= 1, f"patience must be >= 1 or None, got {self.patience}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden"], d["channels"] = list(self.hidden), list(self.channels)
        return d

    # Settings that may change when a run is resumed (more epochs, another device...).
    RESUMABLE_CHANGES = ("epochs", "patience", "device", "threads", "data_dir")

    def architecture_dict(self) -> dict[str, Any]:
        d = self.to_dict()
        for key in self.RESUMABLE_CHANGES:
            d.pop(key)
        return d


FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read settings from a TOML file: top-level keys, or a ``[train]`` table, named as TrainConfig's fields."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    settings = raw.get("train", raw)
    settings = {k.replace("-", "_"): v for k, v in settings.items()}
    unknown = sorted(set(settings) - FIELDS)
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting(s) {unknown}; known: {sorted(FIELDS)}")
    return settings


def make_config(config_file: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """TrainConfig from defaults, then the TOML file, then explicit overrides (None means 'not given')."""
    settings: dict[str, Any] = {}
    if config_file is not None:
        settings.update(load_toml(config_file))
    settings.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(settings) - FIELDS)
    if unknown:
        raise ConfigError(f"unknown setting(s) {unknown}; known: {sorted(FIELDS)}")
    try:
        return TrainConfig(**settings)
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc


__all__ = ["TrainConfig", "make_config", "load_toml"]
