"""A run directory read back: its saved settings, the settings of a resume, and its model, method and weights.

What [`train`][varinf.training.train] writes into a run directory,

    config.json                      the TrainConfig and the model's architecture
    checkpoints/{last,best}.*        safetensors weights + JSON (see varinf.checkpoint)
    metrics.jsonl                    one line per epoch

is read here, so that evaluation and plotting load a run without importing the training loop:
[`saved_config`][varinf.runs.saved_config] and [`resume_config`][varinf.runs.resume_config] give the settings,
[`load_model`][varinf.runs.load_model], [`load_method`][varinf.runs.load_method] and
[`load_weights`][varinf.runs.load_weights] rebuild what a checkpoint holds.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from varinf.checkpoint import MAX_RECORD_BYTES, read_checkpoint, restore
from varinf.config import RULES, TrainConfig, config_from_dict, config_from_saved
from varinf.errors import CheckpointError, ConfigError, VarinfError
from varinf.infer import METHODS, Method
from varinf.models import MODEL_KINDS
from varinf.runfiles import read_regular, shown

__all__ = ["load_model", "load_method", "load_weights", "saved_config", "resume_config", "trained_epochs",
           "method_for", "resolve_device", "CHECKPOINTS", "CONFIG", "METRICS", "CUSTOM"]

CHECKPOINTS = "checkpoints"
CONFIG = "config.json"
METRICS = "metrics.jsonl"
CUSTOM = "custom"
def resolve_device(name: str) -> torch.device:
    name = RULES["device"](name)              # cpu, cuda or cuda:N, else a one-line ConfigError
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but torch sees no CUDA device; use --device cpu")
    return torch.device(name)


def method_for(cfg: TrainConfig, model, data_dim: int) -> Method:
    """The training method ``cfg.method`` on ``model``, built from the run's settings (the registry's builder)."""
    return METHODS[cfg.method].build(model, cfg.resolved(), data_dim)


class _WithMethodState:
    """What a checkpoint saves as "the model": the model's tensors plus ``method.*`` for a method's own state.

    Methods with state outside their optimizers (NVIL's baseline network and running moments)
    expose it as ``method.state_module()``; ``load_model`` ignores those tensors.
    """

    PREFIX = "method."

    def __init__(self, model: torch.nn.Module, extra: torch.nn.Module | None):
        self.model, self.extra = model, extra

    def state_dict(self) -> dict:
        d = dict(self.model.state_dict())
        if self.extra is not None:
            d.update({self.PREFIX + k: v for k, v in self.extra.state_dict().items()})
        return d

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict({k: v for k, v in state.items() if not k.startswith(self.PREFIX)})
        if self.extra is not None:
            self.extra.load_state_dict({k[len(self.PREFIX):]: v for k, v in state.items()
                                        if k.startswith(self.PREFIX)})


def read_json(path: Path) -> dict | None:
    """A run file varinf wrote (config.json), parsed; None when absent; CheckpointError when unusable."""
    try:
        return json.loads(read_regular(path, MAX_RECORD_BYTES))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path} is unreadable ({shown(str(exc), 80)}); it is the run's settings — restore it "
                              "or start a new run directory") from None


def saved_config(run_dir: str | Path) -> TrainConfig | None:
    """The settings a run directory was started with (config.json), or None before its start."""
    path = Path(run_dir) / CONFIG
    info = read_json(path)
    if info is None:
        return None
    try:
        return config_from_saved(info["train"], what=str(path))
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} is unreadable ({shown(str(exc), 80)}); it is the run's settings — restore it "
                              "or start a new run directory") from None


def trained_epochs(run_dir: str | Path) -> int:
    """How many epochs ``RUN_DIR/metrics.jsonl`` records (its non-blank lines; 0 when absent)."""
    try:
        text = read_regular(Path(run_dir) / METRICS, MAX_RECORD_BYTES)
    except FileNotFoundError:
        return 0
    return sum(1 for line in text.splitlines() if line.strip())


def resume_config(run_dir: str | Path, **changes) -> TrainConfig:
    """The run's saved settings with ``changes`` applied; only settings that are safe to change may differ.

    ``epochs``, ``patience`` (0: early stopping off), ``device``, ``data_dir`` and ``threads`` may
    change (a different thread count warns: the result is then not bit-identical). Any other setting
    that differs from the saved one is refused with the list of differences. A change of None means
    "not given" (the run's value stays).
    """
    saved = saved_config(run_dir)
    if saved is None:
        raise CheckpointError(NOTHING_TO_RESUME.format(run_dir=run_dir))
    changes = {k: v for k, v in changes.items() if v is not None}
    current = saved.resolved().to_dict()                 # a saved None (the method's default) as its value
    unknown = sorted(set(changes) - set(current))
    if unknown:
        raise ConfigError(f"unknown setting(s) {unknown}; known: {sorted(current)}")
    refuse_changes(run_dir, current, changes)
    if changes.get("threads") not in (None, saved.threads):
        warnings.warn(f"resuming {run_dir} with threads {changes['threads']} (it ran with {saved.threads}; 0 is "
                      "torch's default): the result will not be bit-identical to an unbroken run", stacklevel=2)
    return config_from_dict({**current, **changes})


NOTHING_TO_RESUME = ("{run_dir} holds no saved settings (config.json) to resume: the run was stopped before it "
                      "began, or never started there; start it again with its settings and without --resume")


def refuse_changes(run_dir, current: dict, given: dict) -> None:
    """ConfigError listing the settings of ``given`` that differ from ``current`` (the run's saved settings,
    resolved) and may not change on resume."""
    diff = {k: (current[k], v) for k, v in given.items()                    # compared as validated ("a" is "A")
            if k not in TrainConfig.RESUMABLE_CHANGES and _normal(RULES[k](v)) != _normal(current[k])}
    if diff:
        listed = ", ".join(f"{k}: saved {shown(a, 40)}, given {shown(b, 40)}" for k, (a, b) in sorted(diff.items()))
        raise ConfigError(f"cannot resume {run_dir} with other settings ({listed}); only "
                          f"{', '.join(TrainConfig.RESUMABLE_CHANGES)} may change on --resume")


def _normal(v):
    return list(v) if isinstance(v, tuple) else v


def load_model(run_dir: str | Path, checkpoint: str = "best", device: str = "cpu") -> tuple[torch.nn.Module, TrainConfig,
                                                                                           dict]:
    """Rebuild the built-in model of a run directory from its checkpoint: (model, train config, checkpoint meta).

    The model kind comes from the checkpoint's ``model_kind`` ("vae" when absent: older runs). A run
    of a user's model is reloaded with [`load_weights`][varinf.runs.load_weights] instead.
    """
    model, cfg, meta, tensors = _model_of_checkpoint(run_dir, checkpoint)
    _restore_model_only(tensors, meta, model)
    return model.to(resolve_device(device)).eval(), cfg, meta


def load_method(run_dir: str | Path, checkpoint: str = "best", device: str = "cpu") -> tuple[Method, TrainConfig, dict]:
    """The training method of a built-in run, as it stood at ``checkpoint``: (method, train config, meta).

    The model as [`load_model`][varinf.runs.load_model] rebuilds it, plus the method's own learned state (HVI's step
    sizes and reverse model, NVIL's baseline), so that ``method.validation_bound(x, S, generator)``
    is the run's training objective on any data, e.g. the test split.
    """
    model, cfg, meta, tensors = _model_of_checkpoint(run_dir, checkpoint)
    method = method_for(cfg, model, model.config.data_dim)
    extra = method.state_module()
    restore(tensors, meta, model=_WithMethodState(model, extra))      # the model's and the method's tensors
    for module in (model, extra):
        if module is not None:
            module.to(resolve_device(device)).eval()
    return method, cfg, meta


def _model_of_checkpoint(run_dir: str | Path, checkpoint: str) -> tuple[torch.nn.Module, TrainConfig, dict, dict]:
    """The built-in model a checkpoint describes, not yet loaded, with (config, meta, the checkpoint's tensors)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    tensors, meta = read_checkpoint(run_dir / CHECKPOINTS, checkpoint)
    kind = meta.get("model_kind", "vae")
    if kind == CUSTOM:
        raise CheckpointError(f"{run_dir} trained a user-defined model ({meta.get('model', {}).get('class')}); "
                              "build it in Python and call varinf.load_weights(model, run_dir)")
    try:
        cfg = config_from_saved(meta["config"], what=f"checkpoint {run_dir / CHECKPOINTS / checkpoint}.json")
        model_cls, config_cls = MODEL_KINDS[kind]
        mcfg = config_cls(**meta["model"])
        with torch.device("meta"):            # sizes from the record, checked against the weights before allocating
            _check_shapes(model_cls(mcfg), tensors, run_dir / CHECKPOINTS / f"{checkpoint}.json")
    except (TypeError, KeyError, VarinfError) as exc:
        raise CheckpointError(f"checkpoint {run_dir / CHECKPOINTS / checkpoint}.json has an unreadable config: "
                              f"{exc}") from None
    return model_cls(mcfg), cfg, meta, tensors


def _check_shapes(model: torch.nn.Module, tensors: dict, json_path: Path) -> None:
    """CheckpointError unless every tensor of ``model`` (built on the meta device: no memory) is in the weights
    with its shape, so that a record's sizes never ask for more memory than its weights file holds."""
    for key, t in model.state_dict().items():
        saved = tensors.get("model." + key)
        if saved is None or tuple(saved.shape) != tuple(t.shape):
            raise CheckpointError(f"checkpoint was written by a model of another configuration: {key} has shape "
                                  f"{None if saved is None else tuple(saved.shape)} in the weights, the record "
                                  f"{json_path} describes {shown(tuple(t.shape), 60)}")


def load_weights(model: torch.nn.Module, run_dir: str | Path, checkpoint: str = "best") -> dict:
    """Load a run's weights into ``model`` (built by the caller, e.g. a user-defined model); returns the meta."""
    tensors, meta = read_checkpoint(Path(run_dir) / CHECKPOINTS, checkpoint)
    _restore_model_only(tensors, meta, model)
    return meta


def _restore_model_only(tensors: dict, meta: dict, model: torch.nn.Module) -> None:
    prefix = "model." + _WithMethodState.PREFIX
    restore({k: v for k, v in tensors.items() if not k.startswith(prefix)}, meta, model=model)
