"""Training settings: one dataclass, filled from defaults, a TOML file and command-line flags.

Every setting is checked in one place, `TrainConfig.__post_init__`, by name, type and
range, whatever its source (TOML, flags, a checkpoint's JSON, the Python API); a bad value is a
one-line [`ConfigError`][varinf.errors.ConfigError] naming the setting, the value and what is allowed.
Validation is a small table (`RULES`) read by one function rather than a validation
library: the dataclass has 30 plain fields whose rules fit in a line each, and the messages
must read the same for a flag, a TOML key and an API keyword.

One value, one meaning. Method-dependent settings (``samples``, ``refine_steps``,
``inference_rate``, ... : the keys of `GENERIC_DEFAULTS`) default to ``None``, meaning "the
method's own default"; ``0`` where allowed means "none" (``refine_steps = 0``: no refinement,
``valid_refine_steps = 0``: the encoder's bound). The defaults are resolved where they are used,
by `TrainConfig.resolved` from one table (`method_defaults`: a method's registry
entry ``varinf.infer.METHODS[name].defaults`` over `GENERIC_DEFAULTS`), so
``dataclasses.replace(cfg, method="gbvi")`` equals ``make_config(method="gbvi")``. ``varinf.train``
resolves the config it is given, so a run's saved config (config.json, checkpoints) holds the
concrete values it ran with and a later change of a default never changes a saved run.
``patience = 0`` disables early stopping (flags, TOML, API and ``--resume`` alike); ``None`` is not
a patience (in `make_config`, as for every setting, ``None`` means "not given").
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from varinf.errors import ConfigError
from varinf.runfiles import read_regular
from varinf.likelihoods import LIKELIHOODS
from varinf.models.vae import ACTIVATIONS
from varinf.refinement import AVI_DEFAULT_RATE

ESTIMATORS = ("A", "B")
OPTIMIZERS = ("adam", "rmsprop")
REFINE_OPTIMIZERS = ("sgd", "adam")
MODELS = ("mlp", "cnn", "sbn", "custom")     # custom: a user model object passed to varinf.train
MAX_SEED = 2 ** 63 - 1
AUTOCAST = ("bf16",)
MAX_TOML_BYTES = 1 << 20              # a settings file is a few hundred bytes

# The network size where the settings give none (None, resolved where used, as the method's defaults):
# the dataset's own (digits is 64-dimensional with 1197 training images; 8 latents and 256 hidden units
# had the best validation bound of the sizes tried, docs/RESULTS.md §3), else Hjelm et al. 2015 Table 1's
# 784-500-200 network.
SIZE_DEFAULTS = {"digits": dict(latent_dim=8, hidden=(256,))}
GENERIC_SIZE = dict(latent_dim=200, hidden=(500,))

# The method-dependent settings and their values where a method's registry entry
# (varinf.infer.METHODS[name].defaults) gives none. avi_rate: every AVI refiner, at training or at
# test time on a run of any method, defaults to varinf's damped step γ = 0.1 (Eq. 9 as printed is γ = 1).
GENERIC_DEFAULTS = dict(samples=1, refine_steps=0, inference_rate=5e-3, refine_optimizer="sgd", refine_samples=20,
                        avi_rate=AVI_DEFAULT_RATE, valid_refine_steps=0, leapfrog_steps=0,
                        temperature=None)        # None: the method has no relaxation
PATIENCE_OFF = 0
# Settings only some methods read (those whose registry entry names a default for them): given another value than
# the generic one to any other method they would change nothing, so that is refused, not ignored.
METHOD_SPECIFIC = ("temperature", "leapfrog_steps")


@dataclass
class TrainConfig:
    """Everything that defines a training run. Defaults: Hjelm et al. 2015 Table 1's VAE (784-500-200 softplus); 64-256-8 on digits."""

    # data
    dataset: str = "digits"
    data_dir: str | None = None
    binarize: bool | None = None          # mnist: dynamic binarization (fresh Bernoulli draw per batch)
    # model
    model: str = "mlp"                    # mlp | cnn (VAE) | sbn (sigmoid belief network; hidden = () is linear)
    latent_dim: int | tuple[int, ...] | None = None   # K; for sbn a list (K₁, …, K_L) = L stochastic layers,
    #                                               bottom first; None: the dataset's size (SIZE_DEFAULTS)
    hidden: tuple[int, ...] | None = None  # () is no hidden layer (a linear sbn); None as latent_dim
    activation: str = "softplus"
    channels: tuple[int, ...] = (32, 64)
    likelihood: str = "bernoulli"         # p(x|z) of mlp/cnn: bernoulli | gaussian-global | gaussian-pixel
    # inference and learning
    method: str = "vae"
    estimator: str = "B"                  # SGVB estimator A or B (Kingma & Welling 2014; Patlan §IV)
    samples: int | None = None            # L per datapoint; the M-step's N for refined EM (method default)
    optimizer: str = "adam"
    lr: float = 1e-3
    warmup_steps: int = 0                 # linear learning-rate warm-up over the first W optimizer steps
    batch_size: int = 100
    epochs: int = 100
    patience: int = 20                    # early stopping on the validation bound; 0 disables it
    valid_samples: int = 1                # samples per datapoint for the per-epoch validation bound
    # None below: the method's default (GENERIC_DEFAULTS, METHODS[method].defaults), resolved where used
    # iterative refinement of q (Hjelm et al. 2015 §2; refined-EM methods; varinf eval --refine-steps)
    refine_steps: int | None = None       # T, refinement steps per E-step
    inference_rate: float | None = None   # γ, the gradient refiners' step size (Eq. 4; not given in the paper)
    refine_optimizer: str | None = None   # sgd: plain steps (Eq. 4) | adam: adaptive per-parameter steps
    refine_samples: int | None = None     # N, samples per refinement step (Eqs. 5, 8, 9)
    avi_rate: float | None = None         # γ of AVI's step μ ← (1−γ)μ + γ Σ w̃ h (varinf's 0.1; Eq. 9: 1)
    valid_refine_steps: int | None = None  # refinement steps in the validation bound (0: the encoder's bound;
    #                                        None: the method's, T for gbvi/savae)
    leapfrog_steps: int | None = None     # K, HVI's leapfrog steps (Salimans, Kingma & Welling 2015)
    temperature: float | None = None      # τ of the Gumbel-Softmax / Concrete relaxation (gumbel, gumbel-st)
    seed: int = 0
    device: str = "cpu"
    threads: int = 1                      # torch intra-op threads; 0: torch's default (one per core), which
    #                                       collapses on shared cores (docs/RESULTS.md §3, "Threads")
    # reduced precision (GPU path; off by default; their effect on the bound is not yet measured)
    tf32: bool = False                    # CUDA: TF32 tensor-core matmuls (10-bit mantissa inputs)
    autocast: str | None = None           # "bf16": torch.autocast in bfloat16 for the training step

    def __post_init__(self):
        for name, value in list(dataclasses.asdict(self).items()):
            setattr(self, name, _check(name, value))
        from varinf.infer import METHODS
        from varinf.models import MODEL_CLASSES
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {sorted(METHODS)}, got {self.method!r}")
        spec = METHODS[self.method]
        family = MODEL_CLASSES[self.model].family.name if self.model in MODEL_CLASSES else None
        if isinstance(self.latent_dim, tuple):             # several stochastic layers: a deep SBN
            if self.model != "sbn":
                raise ConfigError(f"latent_dim {list(self.latent_dim)} lists several stochastic layers, which only "
                                  f"--model sbn has; --model {self.model} takes one integer")
            family = "layered-bernoulli"
        for name in METHOD_SPECIFIC:                     # given to a method that never reads it: refused
            value = getattr(self, name)
            if value is not None and value != GENERIC_DEFAULTS[name] and name not in spec.defaults:
                readers = sorted(n for n, s in METHODS.items() if name in s.defaults)
                raise ConfigError(f"{name} {value:g} is read only by method {' and '.join(readers)}; method "
                                  f"{self.method!r} does not use it (leave it out)")
        if family is not None and family not in spec.families:
            fitting = sorted(n for n, s in METHODS.items() if family in s.families)
            raise ConfigError(f"method {self.method!r} trains {' or '.join(spec.families)} latents but model "
                              f"{self.model!r} has {family} latents; with --model {self.model} use one of {fitting}")
        if self.model == "sbn" and self.likelihood != "bernoulli":
            raise ConfigError(f"likelihood {self.likelihood!r} is for --model mlp or cnn; the sbn's p(x|h) is "
                              "bernoulli")
        if self.model == "cnn" and not self.channels:
            raise ConfigError("channels must list at least one width for --model cnn, got []")

    def resolved(self) -> TrainConfig:
        """This config with every default (None) filled in: the network size from `SIZE_DEFAULTS` (the
        dataset's) or `GENERIC_SIZE`, the method's settings from `method_defaults`."""
        table = {**method_defaults(self.method), **SIZE_DEFAULTS.get(self.dataset, GENERIC_SIZE)}
        values = {name: table[name] if getattr(self, name) is None else getattr(self, name) for name in table}
        if values["valid_refine_steps"] is None:              # gbvi, savae: the validation bound refines as training
            values["valid_refine_steps"] = values["refine_steps"]
        return dataclasses.replace(self, **values)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["channels"] = list(self.channels)
        if self.hidden is not None:
            d["hidden"] = list(self.hidden)
        if isinstance(self.latent_dim, tuple):
            d["latent_dim"] = list(self.latent_dim)
        return d

    # Settings that may change when a run is resumed: they do not change what the run computes.
    RESUMABLE_CHANGES = ("epochs", "patience", "device", "threads", "data_dir")

    def architecture_dict(self) -> dict[str, Any]:
        d = self.to_dict()
        for key in self.RESUMABLE_CHANGES:
            d.pop(key)
        return d


def method_defaults(method: str) -> dict[str, Any]:
    """The method-dependent settings of ``method``: its registry entry's defaults over GENERIC_DEFAULTS.

    The one table of defaults. ``valid_refine_steps`` may be None: the method's own refine_steps.
    """
    from varinf.infer import METHODS
    defaults = METHODS[method].defaults
    return {name: defaults.get(name, generic) for name, generic in GENERIC_DEFAULTS.items()}


def _int(name, value, low=None, high=None, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer() and not isinstance(value, bool):
            value = int(value)
        else:
            raise ConfigError(f"{name} must be an integer, got {value!r}")
    if low is not None and value < low or high is not None and value > high:
        span = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ConfigError(f"{name} must be an integer {span}{' or None' if allow_none else ''}, got {value!r}")
    return value


def _float(name, value, low=None, high=None, low_open=True, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    value = float(value)
    bad = not math.isfinite(value) or (low is not None and (value <= low if low_open else value < low)) \
        or (high is not None and value > high)
    if bad:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"<= {high:g}"
        raise ConfigError(f"{name} must be a finite number {' and '.join(t for t in (lo, hi) if t)}, got {value!r}")
    return value


def _choice(name, value, choices, allow_none=False, normalise=str):
    if value is None and allow_none:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be one of {list(choices)}, got {value!r}")
    value = normalise(value)
    if value not in choices:
        raise ConfigError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def _ints(name, value, low, allow_empty=True):
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        value = [value]
    out = tuple(_int(f"{name} entry", v) for v in value)
    if any(v < low for v in out) or (not allow_empty and not out):
        raise ConfigError(f"{name} must be a list of integers >= {low}, got {list(value)!r}")
    return out


def _latent_dims(value):
    """K (an integer >= 1), or a list of two or more (a deep SBN's layer widths); a one-entry list is its integer."""
    if isinstance(value, (list, tuple)):
        widths = _ints("latent_dim", value, 1, allow_empty=False)
        return widths[0] if len(widths) == 1 else widths
    return _int("latent_dim", value, 1)


def _string(name, value, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _device(name, value):
    value = _string(name, value)
    kind, _, index = value.partition(":")
    if kind not in ("cpu", "cuda") or (index and not (kind == "cuda" and index.isdigit())):
        raise ConfigError(f"{name} must be cpu, cuda or cuda:N, got {value!r}")
    return value


def _bool(name, value, allow_none=False):
    if value is None and allow_none:
        return None
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return value


def _patience(value):
    try:
        return _int("patience", value, PATIENCE_OFF)
    except ConfigError:
        raise ConfigError(f"patience must be an integer >= 0 (epochs without improvement before stopping; "
                          f"{PATIENCE_OFF} disables early stopping), got {value!r}") from None


# name -> check(value) returning the normalised value: the single table of what each setting allows.
RULES = {
    "dataset": lambda v: _string("dataset", v),
    "data_dir": lambda v: _string("data_dir", v, allow_none=True),
    "binarize": lambda v: _bool("binarize", v, allow_none=True),
    "model": lambda v: _choice("model", v, MODELS),
    "latent_dim": lambda v: None if v is None else _latent_dims(v),
    "hidden": lambda v: None if v is None else _ints("hidden", v, 1),
    "activation": lambda v: _choice("activation", v, tuple(ACTIVATIONS)),
    "channels": lambda v: _ints("channels", v, 1),
    "likelihood": lambda v: _choice("likelihood", v, tuple(LIKELIHOODS), normalise=str.lower),
    "method": lambda v: _string("method", v),
    "estimator": lambda v: _choice("estimator", v, ESTIMATORS, normalise=str.upper),
    "samples": lambda v: _int("samples", v, 1, allow_none=True),
    "optimizer": lambda v: _choice("optimizer", v, OPTIMIZERS, normalise=str.lower),
    "lr": lambda v: _float("lr", v, 0.0),
    "warmup_steps": lambda v: _int("warmup_steps", v, 0),
    "batch_size": lambda v: _int("batch_size", v, 1),
    "epochs": lambda v: _int("epochs", v, 1),
    "patience": lambda v: _patience(v),
    "valid_samples": lambda v: _int("valid_samples", v, 1),
    "refine_steps": lambda v: _int("refine_steps", v, 0, allow_none=True),
    "inference_rate": lambda v: _float("inference_rate", v, 0.0, allow_none=True),
    "refine_optimizer": lambda v: _choice("refine_optimizer", v, REFINE_OPTIMIZERS, allow_none=True,
                                          normalise=str.lower),
    "refine_samples": lambda v: _int("refine_samples", v, 1, allow_none=True),
    "avi_rate": lambda v: _float("avi_rate", v, 0.0, 1.0, allow_none=True),
    "valid_refine_steps": lambda v: _int("valid_refine_steps", v, 0, allow_none=True),
    "leapfrog_steps": lambda v: _int("leapfrog_steps", v, 0, allow_none=True),
    "temperature": lambda v: _float("temperature", v, 0.0, allow_none=True),
    "seed": lambda v: _int("seed", v, 0, MAX_SEED),
    "device": lambda v: _device("device", v),
    "threads": lambda v: _int("threads", v, 0),
    "tf32": lambda v: _bool("tf32", v),
    "autocast": lambda v: _choice("autocast", v, AUTOCAST, allow_none=True, normalise=str.lower),
}


def _check(name: str, value: Any) -> Any:
    return RULES[name](value)


FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
assert FIELDS == set(RULES), "every TrainConfig field has exactly one rule"


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read settings from a TOML file: top-level keys, or a ``[train]`` table, named as TrainConfig's fields."""
    path = Path(path)
    try:
        raw = tomllib.loads(read_regular(path, MAX_TOML_BYTES, error=ConfigError).decode())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory; give a .toml file") from None
    except (UnicodeDecodeError, PermissionError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} nests arrays or tables too deeply; settings are flat values") from None
    settings = raw.get("train", raw)
    if not isinstance(settings, dict):
        raise ConfigError(f"config file {path}: [train] must be a table of settings")
    settings = {k.replace("-", "_"): v for k, v in settings.items()}
    unknown = sorted(set(settings) - FIELDS)
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting(s) {unknown}; known: {sorted(FIELDS)}")
    return settings


def make_config(config_file: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """TrainConfig from defaults, then the TOML file, then explicit overrides (None means 'not given')."""
    if "quiet" in overrides or "progress" in overrides:
        raise ConfigError("quiet/progress is not a training setting: pass progress=False to varinf.train and set "
                          "the 'varinf' logger's level (logging.getLogger('varinf')) for the per-epoch lines")
    settings: dict[str, Any] = {}
    if config_file is not None:
        settings.update(load_toml(config_file))
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return config_from_dict(settings)


def config_from_dict(settings: dict[str, Any], what: str = "settings") -> TrainConfig:
    """TrainConfig from a mapping of setting names (an API dict), checked."""
    if not isinstance(settings, dict):
        raise ConfigError(f"{what} must be a mapping of setting names to values, got {type(settings).__name__}")
    unknown = sorted(set(settings) - FIELDS)
    if unknown:
        raise ConfigError(f"{what}: unknown setting(s) {unknown}; known: {sorted(FIELDS)}")
    return TrainConfig(**settings)


def config_from_saved(settings: dict[str, Any], what: str) -> TrainConfig:
    """TrainConfig from a run's saved settings (config.json's "train", a checkpoint's "config").

    Runs saved before patience 0 meant "off" (varinf ≤ 0.1.0 of 2026-12-05) wrote ``"patience": null``
    for a run without early stopping; that is read as 0. Likewise ``"threads": null`` (torch's default
    thread count, before 0 said so, 2026-12-06) is read as 0.
    """
    if isinstance(settings, dict):
        settings = {**settings, **{name: off for name, off in (("patience", PATIENCE_OFF), ("threads", 0))
                                   if name in settings and settings[name] is None}}
    return config_from_dict(settings, what)


__all__ = ["TrainConfig", "make_config", "config_from_dict", "config_from_saved", "load_toml", "method_defaults",
           "RULES"]
