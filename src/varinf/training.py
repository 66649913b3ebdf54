"""The training loop: epochs of minibatch updates, validation, early stopping, checkpoints, resume.

A run directory holds

    config.json                      the TrainConfig and the model's architecture
    checkpoints/{last,best}.*        safetensors weights + JSON (see varinf.checkpoint)
    metrics.jsonl                    one line per epoch: epoch, train_elbo, valid_elbo, seconds

The loop is a pure function of the config: parameter initialisation, batch order and
every Monte Carlo draw come from generators seeded by ``cfg.seed``. The last checkpoint
stores the generator state, so ``resume=True`` continues the very same random stream
and ends with exactly the parameters of an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from varinf.checkpoint import (atomic_write_json, atomic_write_text, decode_rng_state, encode_rng_state,
                               read_checkpoint, remove_stale_files, restore, save_checkpoint)
from varinf.config import TrainConfig
from varinf.data import Dataset, check_data, iterate_batches, load_dataset
from varinf.errors import CheckpointError, ConfigError, DataError, VarinfError
from varinf.infer import METHODS
from varinf.models import MODEL_KINDS, SBNConfig, VAEConfig, kind_of, model_kind
from varinf.runlock import run_lock

CHECKPOINTS = "checkpoints"


@dataclass
class TrainResult:
    run_dir: Path
    epochs_run: int
    best_epoch: int
    best_valid_elbo: float
    stopped_early: bool
    history: list[dict]


def resolve_device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but torch sees no CUDA device; use --device cpu")
    return torch.device(name)


def model_config(cfg: TrainConfig, dataset: Dataset) -> VAEConfig | SBNConfig:
    """The model's architecture config for ``cfg.model``: "mlp"/"cnn" → VAEConfig, "sbn" → SBNConfig."""
    if model_kind(cfg.model) == "sbn":
        return SBNConfig(data_dim=dataset.dim, latent_dim=cfg.latent_dim, hidden=cfg.hidden,
                         activation=cfg.activation)
    return VAEConfig(data_dim=dataset.dim, latent_dim=cfg.latent_dim, architecture=cfg.model,
                     hidden=cfg.hidden, activation=cfg.activation, image_shape=dataset.image_shape,
                     channels=cfg.channels)


def build_model(mcfg: VAEConfig | SBNConfig, seed: int, device: torch.device):
    """Construct the model with parameters initialised from ``seed`` (the global RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MODEL_KINDS[kind_of(mcfg)][0](mcfg)
    return model.to(device)


def build_method(cfg: TrainConfig, device: torch.device):
    """What ``train`` starts from: the checked dataset, the model initialised from ``cfg.seed`` and
    the training method ``cfg.method`` on it; returns ``(dataset, model, method)``."""
    dataset = load_training_data(cfg, device)
    model = build_model(model_config(cfg, dataset), cfg.seed, device)
    return dataset, model, METHODS[cfg.method](model, cfg)


class _WithMethodState:
    """What a checkpoint saves as "the model": the model's tensors plus ``method.*`` for a method's own state.

    Methods with state outside their optimizers (NVIL's baseline network and running moments)
    expose it as ``method.state_module()``; ``load_model`` ignores those tensors.
    """

    PREFIX = "method."

    def __init__(self, model: torch.nn.Module, extra: torch.nn.Module):
        self.model, self.extra = model, extra

    def state_dict(self) -> dict:
        d = dict(self.model.state_dict())
        d.update({self.PREFIX + k: v for k, v in self.extra.state_dict().items()})
        return d

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict({k: v for k, v in state.items() if not k.startswith(self.PREFIX)})
        self.extra.load_state_dict({k[len(self.PREFIX):]: v for k, v in state.items() if k.startswith(self.PREFIX)})


def _checkpointed(model, method):
    return _WithMethodState(model, method.state_module()) if hasattr(method, "state_module") else model


def load_training_data(cfg: TrainConfig, device: torch.device) -> Dataset:
    """The dataset of ``cfg`` with train and valid splits checked for a Bernoulli likelihood."""
    dataset = load_dataset(cfg.dataset, cfg.data_dir, binarize=cfg.binarize)
    for split in ("train", "valid"):
        x = dataset.split(split)
        if not dataset.dynamic_binarize:
            try:
                check_data(x, what=f"{dataset.name} {split} split", require_binary=True)
            except DataError as exc:
                raise DataError(f"{exc}; or pass --binarize (binarize=True) to draw a fresh Bernoulli "
                                "binarization of the grey levels every epoch") from None
    return dataset.to(device)


def _seeded(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


@torch.no_grad()
def validation_bound(method, x: torch.Tensor, cfg: TrainConfig, epoch: int, device: torch.device,
                     dynamic_binarize: bool) -> float:
    """Mean per-datapoint bound on the validation split, with its own generator (seeded by epoch)."""
    gen = _seeded(cfg.seed * 1_000_003 + epoch + 1, device)
    total = 0.0
    for xb in iterate_batches(x, max(cfg.batch_size, 500), generator=gen, shuffle=False,
                              dynamic_binarize=dynamic_binarize):
        total += method.validation_bound(xb, cfg.valid_samples, gen).sum().item()
    return total / x.shape[0]


def train_epoch(method, x: torch.Tensor, batch_size: int, generator: torch.Generator,
                dynamic_binarize: bool = False, bar: tqdm | None = None) -> float:
    """One pass over ``x`` in shuffled minibatches, one ``method.step`` each; returns the mean bound."""
    total = torch.zeros((), device=x.device)
    seen = 0
    for i, xb in enumerate(iterate_batches(x, batch_size, generator=generator, dynamic_binarize=dynamic_binarize)):
        bound = method.step(xb, generator)                    # E/M updates of the method, (1/B) Σ bound
        total += bound * xb.shape[0]
        seen += xb.shape[0]
        if bar is not None and not bar.disable:
            if i % 25 == 0:
                bar.set_postfix(elbo=f"{(total / seen).item():.2f}", refresh=False)
            bar.update(1)
    return (total / seen).item()


def _write_metrics(run_dir: Path, history: list[dict]) -> None:
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))


def train(cfg: TrainConfig, run_dir: str | Path, *, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train ``cfg.method`` on ``cfg.dataset`` into ``run_dir``; see the module docstring."""
    with run_lock(run_dir):                   # one writer per run directory; then clear what a kill left
        remove_stale_files(run_dir, Path(run_dir) / CHECKPOINTS)
        return _train_locked(cfg, run_dir, resume=resume, progress=progress)


def _train_locked(cfg: TrainConfig, run_dir: str | Path, *, resume: bool, progress: bool) -> TrainResult:
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / CHECKPOINTS
    if cfg.method not in METHODS:
        raise ConfigError(f"unknown method {cfg.method!r}; choose one of {sorted(METHODS)}")
    if not resume and (ckpt_dir / "last.json").exists():
        raise CheckpointError(f"{run_dir} already holds a training run; pass --resume to continue it "
                              "or choose another --out (nothing was overwritten)")
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    dataset, model, method = build_method(cfg, device)
    train_x, valid_x = dataset.split("train"), dataset.split("valid")
    mcfg = model.config
    gen = _seeded(cfg.seed, device)

    start_epoch, best_valid, best_epoch, bad_epochs, history = 0, -math.inf, -1, 0, []
    if resume:
        tensors, meta = read_checkpoint(ckpt_dir, "last")
        saved = TrainConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in meta["config"].items()})
        if saved.architecture_dict() != cfg.architecture_dict():
            diff = {k: (v, cfg.architecture_dict()[k]) for k, v in saved.architecture_dict().items()
                    if cfg.architecture_dict()[k] != v}
            raise CheckpointError(f"cannot resume {run_dir}: its checkpoint was trained with another config "
                                  f"(saved vs now: {diff})")
        restore(tensors, meta, model=_checkpointed(model, method), optimizers=method.optimizers())
        gen.set_state(decode_rng_state(meta["rng_state"]))
        start_epoch, history = meta["epoch"] + 1, meta["history"]
        best_valid, best_epoch, bad_epochs = meta["best_valid_elbo"], meta["best_epoch"], meta["bad_epochs"]
        if meta.get("stopped_early"):
            start_epoch = cfg.epochs  # nothing left to do
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / "config.json", {"train": cfg.to_dict(), "model": mcfg.to_dict(),
                                                   "model_kind": kind_of(mcfg),
                                                   "dataset": dataset.name, "method": cfg.method,
                                                   "valid_elbo": getattr(method, "validation_description",
                                                                         "bound of the amortised encoder q_phi")})
    _write_metrics(run_dir, history)

    stopped_early = False
    n_batches = math.ceil(train_x.shape[0] / cfg.batch_size)
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        model.train()
        with tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False,
                  mininterval=0.5) as bar:
            train_elbo = train_epoch(method, train_x, cfg.batch_size, gen, dataset.dynamic_binarize, bar)
        if not math.isfinite(train_elbo):
            raise VarinfError(f"the training bound became {train_elbo} in epoch {epoch + 1}; lower the learning "
                              f"rate (now {cfg.lr}) or warm it up (--warmup-steps). The checkpoints of epoch {epoch} in {ckpt_dir} are intact.")
        model.eval()
        valid_elbo = validation_bound(method, valid_x, cfg, epoch, device, dataset.dynamic_binarize)
        seconds = time.perf_counter() - t0
        history.append({"epoch": epoch + 1, "train_elbo": train_elbo, "valid_elbo": valid_elbo,
                        "seconds": seconds})
        improved = valid_elbo > best_valid
        if improved:
            best_valid, best_epoch, bad_epochs = valid_elbo, epoch + 1, 0
        else:
            bad_epochs += 1
        stopped_early = cfg.patience is not None and bad_epochs >= cfg.patience
        meta = {"config": cfg.to_dict(), "model": mcfg.to_dict(), "model_kind": kind_of(mcfg), "epoch": epoch, "history": history,
                "best_valid_elbo": best_valid, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                "stopped_early": stopped_early, "rng_state": encode_rng_state(gen.get_state())}
        if improved:
            save_checkpoint(ckpt_dir, "best", model=_checkpointed(model, method), optimizers=method.optimizers(),
                            meta=meta)
        save_checkpoint(ckpt_dir, "last", model=_checkpointed(model, method), optimizers=method.optimizers(), meta=meta)
        _write_metrics(run_dir, history)
        if progress:
            tqdm.write(f"epoch {epoch + 1:4d}  train ELBO {train_elbo:9.3f}  valid ELBO {valid_elbo:9.3f}  "
                       f"{seconds:6.1f}s{'  *' if improved else ''}")
        if stopped_early:
            if progress:
                tqdm.write(f"early stopping: no validation improvement for {cfg.patience} epochs "
                           f"(best {best_valid:.3f} at epoch {best_epoch})")
            break
    return TrainResult(run_dir, len(history), best_epoch, best_valid, stopped_early, history)


def load_model(run_dir: str | Path, checkpoint: str = "best", device: str = "cpu") -> tuple[torch.nn.Module, TrainConfig,
                                                                                           dict]:
    """Rebuild the model of a run directory from its checkpoint: (model, train config, checkpoint meta).

    The model kind comes from the checkpoint's ``model_kind`` ("vae" when absent: older runs).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    tensors, meta = read_checkpoint(run_dir / CHECKPOINTS, checkpoint)
    try:
        cfg = TrainConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in meta["config"].items()})
        model_cls, config_cls = MODEL_KINDS[meta.get("model_kind", "vae")]
        mcfg = config_cls(**meta["model"])
    except (TypeError, KeyError, VarinfError) as exc:
        raise CheckpointError(f"checkpoint {run_dir / CHECKPOINTS / checkpoint}.json has an unreadable config: {exc}")
    model = model_cls(mcfg)
    prefix = "model." + _WithMethodState.PREFIX
    restore({k: v for k, v in tensors.items() if not k.startswith(prefix)}, meta, model=model)
    return model.to(resolve_device(device)).eval(), cfg, meta


__all__ = ["train", "train_epoch", "TrainResult", "load_model", "build_method", "build_model", "model_config",
           "load_training_data"]
