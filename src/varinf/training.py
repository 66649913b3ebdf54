"""The training loop: epochs of minibatch updates, validation, early stopping, checkpoints, resume.

A run directory holds

    config.json                      the TrainConfig and the model's architecture
    checkpoints/{last,best}.*        safetensors weights + JSON (see varinf.checkpoint)
    metrics.jsonl                    one line per epoch: epoch, train_elbo, valid_elbo, seconds, world_size

The loop owns the optimizers (one update over the parameter groups the method declares, seen as one
optimizer per group in the checkpoints, built from the run's settings), the device, the checkpoints and
the random stream; a method only says what its losses are (``varinf.infer._base``). The loop is a pure
function of the config: parameter initialisation, batch order and every Monte Carlo draw come from
generators seeded by ``cfg.seed``. The last checkpoint stores the generator state, so ``resume=True`` continues the
very same random stream and ends with exactly the parameters of an uninterrupted run.

Bring your own model: ``train(cfg, run_dir, model=my_model, data=my_dataset)`` trains any object
that meets ``varinf.contract.AmortizedLatentModel`` with every method that fits its family
(``cfg.model`` is then "custom"); ``load_weights(my_model, run_dir)`` reloads it.

Data parallelism (``torchrun --nproc_per_node N -m varinf train ...``, ``varinf.distributed``):
every process runs this loop on its slice of every global minibatch; gradients are averaged in
``apply_losses`` (one all-reduce per step) and the per-datapoint noise is that of one process, so
N processes compute the parameters of one process up to float summation order. Rank 0 holds the
run lock and alone writes config.json, metrics and checkpoints; every process reads the
checkpoint on ``--resume``, which works under any number of processes. ``world_size`` is
recorded in config.json (at the start) and in every metrics line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from varinf.checkpoint import (_OWNER as _OWNER_TOKEN, atomic_write_json, atomic_write_text,
                               decode_rng_state, encode_rng_state, read_checkpoint, remove_stale_files, restore,
                               save_checkpoint)
from varinf.config import PATIENCE_OFF, TrainConfig, config_from_saved
from varinf.contract import check_amortized
from varinf.data import Dataset, check_data, iterate_batches, load_dataset
from varinf.distributed import (Context, GradSync, all_reduce_sum, broadcast_error, context, process_device,
                                shard_bounds, sync_generator)
from varinf.errors import CheckpointError, ConfigError, DataError, VarinfError
from varinf.infer import Method, make_optimizers
from varinf.likelihoods import needs_binary_data
from varinf.models import MODEL_KINDS, SBNConfig, VAEConfig, kind_of
from varinf.runfiles import refuse_link, shown
from varinf.runlock import run_lock
# load_model, load_method, load_weights, resume_config and saved_config are re-exported (see __all__ below)
from varinf.streams import Shard, Stream
from varinf.runs import (NOTHING_TO_RESUME, CHECKPOINTS, CONFIG, CUSTOM, METRICS, read_json, refuse_changes,
                         _WithMethodState, load_method, load_model, load_weights, method_for, resolve_device,
                         resume_config, saved_config, trained_epochs)
from varinf.tensorboard_log import EpochBoard

log = logging.getLogger(__name__)          # per-epoch lines (INFO); ``varinf train`` shows them unless --quiet


@dataclass
class TrainResult:
    run_dir: Path
    epochs_run: int
    best_epoch: int
    best_valid_elbo: float
    stopped_early: bool
    history: list[dict]


def model_config(cfg: TrainConfig, dataset: Dataset) -> VAEConfig | SBNConfig:
    """The built-in model's architecture config for ``cfg.model``: "mlp"/"cnn" → VAEConfig, "sbn" → SBNConfig."""
    cfg = cfg.resolved()
    if cfg.model == "sbn":
        return SBNConfig(data_dim=dataset.dim, latent_dim=cfg.latent_dim, hidden=cfg.hidden,
                         activation=cfg.activation)
    return VAEConfig(data_dim=dataset.dim, latent_dim=cfg.latent_dim, architecture=cfg.model,
                     hidden=cfg.hidden, activation=cfg.activation, image_shape=dataset.image_shape,
                     channels=cfg.channels, likelihood=cfg.likelihood)


def memory_bytes(device: torch.device) -> int:
    """The memory a model on ``device`` can use at most: the GPU's, or this machine's physical memory."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")      # POSIX, as the run lock


def check_model_size(mcfg: VAEConfig | SBNConfig, device: torch.device) -> None:
    """ConfigError unless the model's parameters fit in ``device``'s memory, counted on the meta device
    (no memory used), so settings asking for terabytes (a typo, a crafted config.json) fail in one line."""
    with torch.device("meta"):
        model = MODEL_KINDS[kind_of(mcfg)][0](mcfg)
    needed = sum(p.numel() * p.element_size() for p in model.parameters())
    available = memory_bytes(device)
    if needed > available:
        sizes = ", ".join(f"{k}={v}" for k, v in mcfg.to_dict().items() if k in ("latent_dim", "hidden", "channels"))
        raise ConfigError(f"the model of these settings ({sizes}) has {needed / 2 ** 30:.3g} GiB of parameters, "
                          f"more than the {available / 2 ** 30:.3g} GiB of {device.type} memory; "
                          "choose smaller latent_dim, hidden or channels")


def build_model(mcfg: VAEConfig | SBNConfig, seed: int, device: torch.device):
    """Construct the model with parameters initialised from ``seed`` (the global RNG is left untouched),
    after checking on the meta device that its parameters fit in the device's memory."""
    with torch.random.fork_rng(devices=[]):   # the global RNG is left untouched, by the check too
        check_model_size(mcfg, device)
        torch.manual_seed(seed)
        model = MODEL_KINDS[kind_of(mcfg)][0](mcfg)
    return model.to(device)


def build_method(cfg: TrainConfig, device: torch.device):
    """What ``train`` starts from for a built-in model: ``(dataset, model, method)``; the model's
    ``initialise_from_data`` sees the training split (a Gaussian-likelihood VAE starts at the data's
    mean and variance, ``VAE.initialise_from_data``)."""
    dataset = load_training_data(cfg, device)
    model = build_model(model_config(cfg, dataset), cfg.seed, device)
    model.initialise_from_data(dataset.split("train"))
    return dataset, model, method_for(cfg, model, dataset.dim)


def still_rising(valid_bounds: list[float]) -> str | None:
    """Whether a finished run's validation bound was still rising steeply: a note saying so, else None.

    With n epochs and a window of w = max(2, n // 10) epochs, the rule is: the mean bound of the last
    w epochs exceeds that of the w epochs before by at least 2 % of the whole rise so far,
    max(bound) − bound of epoch 1. A bound rising in a straight line gains 10 % per window; one
    that has levelled off gains ~0 (noise only). Runs of fewer than 5 epochs are not judged, nor
    runs whose bound never rose.
    """
    n = len(valid_bounds)
    if n < 5 or not all(math.isfinite(v) for v in valid_bounds):
        return None
    w = max(2, n // 10)
    last, before = valid_bounds[-w:], valid_bounds[-2 * w:-w]
    rise = sum(last) / len(last) - sum(before) / len(before)
    total = max(valid_bounds) - valid_bounds[0]
    if total <= 0 or rise < STILL_RISING_FRACTION * total:
        return None
    return (f"training ended while the validation bound was still rising steeply: +{rise:.4g} nats from the mean of "
            f"epochs {n - 2 * w + 1}-{n - w} to that of epochs {n - w + 1}-{n} ({100 * rise / total:.0f} % of its "
            f"whole rise, {total:.4g} nats); the model has probably not converged: train longer "
            "(--resume with a larger --epochs)")


STILL_RISING_FRACTION = 0.02              # the 2 % of ``still_rising``


def optimizers_for(cfg: TrainConfig, method: Method) -> dict[str, torch.optim.Optimizer]:
    """The optimizer of ``method``'s parameter groups (``make_optimizers``: one update, one view per group), with
    the run's rule, learning rate and warm-up."""
    return make_optimizers(method, cfg.optimizer, cfg.lr, cfg.warmup_steps)


def restore_training_state(tensors: dict, meta: dict, model, method: Method,
                           optimizers: dict[str, torch.optim.Optimizer]) -> None:
    """Load weights and optimizer state; a checkpoint whose optimizers are not the method's groups is refused."""
    saved = set(meta.get("optimizers", {}))
    if saved != set(optimizers):
        raise CheckpointError(f"checkpoint optimizers {sorted(saved)} do not fit method {method.name} "
                              f"(expects {sorted(optimizers)}); resume it with the varinf version that wrote it")
    restore(tensors, meta, model=_WithMethodState(model, method.state_module()), optimizers=optimizers)


def load_training_data(cfg: TrainConfig, device: torch.device, require_binary: bool = True) -> Dataset:
    """The dataset of ``cfg`` with train and valid splits checked (binary for a Bernoulli likelihood)."""
    dataset = load_dataset(cfg.dataset, cfg.data_dir, binarize=cfg.binarize)
    return check_training_data(dataset, require_binary and needs_binary_data(cfg.likelihood)).to(device)


def check_training_data(dataset: Dataset, require_binary: bool) -> Dataset:
    for split in ("train", "valid"):
        x = dataset.split(split)
        try:
            check_data(x, what=f"{dataset.name} {split} split", require_binary=require_binary
                       and not dataset.dynamic_binarize)
        except DataError as exc:
            hint = ("; or pass --binarize (binarize=True) to draw a fresh Bernoulli binarization of the grey "
                    "levels every epoch") if require_binary else ""
            raise DataError(f"{exc}{hint}") from None
    return dataset


def _seeded(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def sharded_batches(x: torch.Tensor, batch_size: int, generator: torch.Generator, ctx: Context, *,
                    shuffle: bool = True, dynamic_binarize: bool = False):
    """This process's slice of every global minibatch: (rows (B_r, D), B_r / B, the method's random stream).

    Every process draws the same global batch (same generator state). Under data parallelism the
    stream is ``Stream(generator, Shard(start, stop, B))``, so the method's per-datapoint draws are
    those of the whole batch (``varinf.streams``); with one process it is the generator itself.
    """
    for xg in iterate_batches(x, batch_size, generator=generator, shuffle=shuffle,
                              dynamic_binarize=dynamic_binarize):
        start, stop = shard_bounds(xg.shape[0], ctx)
        rng = Stream(generator, Shard(start, stop, xg.shape[0])) if ctx.active else generator
        yield xg[start:stop], (stop - start) / xg.shape[0], rng


def check_shardable(n: int, batch_size: int, ctx: Context, what: str) -> None:
    """Every global minibatch must give each process at least one row."""
    smallest = min(batch_size, n % batch_size or batch_size)
    if ctx.active and smallest < ctx.world_size:
        raise ConfigError(f"{what}: a minibatch of {smallest} rows cannot be split over {ctx.world_size} "
                          f"processes; use a batch_size (now {batch_size}) that leaves every process >= 1 row")


@torch.no_grad()
def validation_bound(method: Method, x: torch.Tensor, cfg: TrainConfig, epoch: int, device: torch.device,
                     dynamic_binarize: bool, ctx: Context | None = None) -> float:
    """Mean per-datapoint bound on the validation split, with its own generator (seeded by epoch).

    Sharded over processes like training; the per-process sums are all-reduced (the one host sync is at the end).
    """
    ctx = ctx or context()
    gen = _seeded(cfg.seed * 1_000_003 + epoch + 1, device)
    batch = max(cfg.batch_size, 500)
    check_shardable(x.shape[0], batch, ctx, "validation split")
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for xb, _, rng in sharded_batches(x, batch, gen, ctx, shuffle=False, dynamic_binarize=dynamic_binarize):
        total += method.validation_bound(xb, cfg.valid_samples, rng).sum()
    return all_reduce_sum(total, ctx).item() / x.shape[0]


def precision_context(device: torch.device, autocast: str | None):
    """``torch.autocast`` in bfloat16 for the training step when ``autocast == "bf16"``, else nothing."""
    if autocast is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def train_epoch(method: Method, optimizers: dict[str, torch.optim.Optimizer], x: torch.Tensor, batch_size: int,
                generator: torch.Generator, dynamic_binarize: bool = False, bar: tqdm | None = None, *,
                ctx: Context | None = None, autocast: str | None = None) -> float:
    """One pass over ``x`` in shuffled minibatches, one ``method.step`` each; returns the mean bound.

    Under data parallelism (``ctx.world_size`` > 1) each process steps on its slice of every
    global minibatch and ``GradSync`` averages the gradients; the returned bound is the global mean.
    The loop has no host synchronisation except the progress bar's every 25 steps.
    """
    ctx = ctx or context()
    check_shardable(x.shape[0], batch_size, ctx, "training split")
    total = torch.zeros((), device=x.device)
    seen = 0
    for i, (xb, weight, rng) in enumerate(sharded_batches(x, batch_size, generator, ctx,
                                                          dynamic_binarize=dynamic_binarize)):
        sync = GradSync(weight, ctx) if ctx.active else None
        with precision_context(x.device, autocast):
            bound = method.step(xb, rng, optimizers, sync)         # the method's losses, one step per group
        total += bound.float() * xb.shape[0]
        seen += xb.shape[0]
        if bar is not None and not bar.disable:
            if i % 25 == 0:
                bar.set_postfix(elbo=f"{(total / seen).item():.2f}", refresh=False)
            bar.update(1)
    return (all_reduce_sum(total, ctx) / x.shape[0]).item()


def stops_early(patience: int, bad_epochs: int) -> bool:
    """Early stopping: ``bad_epochs`` epochs in a row without a better validation bound, patience 0 = never."""
    return patience != PATIENCE_OFF and bad_epochs >= patience


def _write_metrics(run_dir: Path, history: list[dict], owner: str) -> None:
    atomic_write_text(run_dir / METRICS, "".join(json.dumps(r, allow_nan=False) + "\n" for r in history), owner)


def train(cfg: TrainConfig, run_dir: str | Path, *, resume: bool = False, progress: bool = True,
          model=None, data: Dataset | None = None, tensorboard: bool = False) -> TrainResult:
    """Train ``cfg.method`` into ``run_dir``; see the module docstring.

    ``model`` and ``data``: a user's amortised model (``varinf.contract``) and a
    [`varinf.data.Dataset`][varinf.data.Dataset] with train and valid splits, instead of the built-in model and
    ``cfg.dataset``. ``resume=True`` continues the run in ``run_dir`` (or starts it if it was
    stopped after saving its settings and before its first checkpoint). ``tensorboard=True`` also
    writes the per-epoch bounds, learning rates and timings as TensorBoard events to
    ``run_dir/tensorboard`` (`varinf.tensorboard_log`; needs ``pip install 'varinf[tensorboard]'``).
    The per-epoch lines go to the ``varinf`` logger: call `varinf.enable_logging` to see them in
    Python.

    Order: the settings, data and model are checked before anything is created; then the run's
    lock is taken and the run directory's state checked (a resume needs its saved settings, and
    its checkpoints where ``metrics.jsonl`` records trained epochs); then ``config.json`` is
    written (atomically, the first file of a new run) and only then is what a killed writer of
    this run left removed.
    """
    if not isinstance(cfg, TrainConfig):
        raise ConfigError(f"train() takes a TrainConfig (varinf.make_config(...)), got {type(cfg).__name__}")
    cfg = cfg.resolved()                      # the method's defaults, as concrete values in config.json and checkpoints
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is an existing file; give a directory for the run")
    if resume and saved_config(run_dir) is None:
        raise CheckpointError(NOTHING_TO_RESUME.format(run_dir=run_dir))
    ctx = context()                           # the process group: asked once per run, handed down
    device = resolve_device(process_device(cfg.device, ctx))   # this process's device, decided once
    with _process_settings(cfg, device):
        return _train(cfg, run_dir, resume, progress, model, data, tensorboard, ctx, device)


@contextlib.contextmanager
def _process_settings(cfg: TrainConfig, device: torch.device):
    """The run's thread count and, on CUDA, its TF32 setting (off unless ``--tf32``), for the run only:
    the caller's values are restored when ``train`` returns or raises."""
    threads = torch.get_num_threads()
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if device.type == "cuda":             # TF32 matmuls: off unless asked for (--tf32)
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = cfg.tf32
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


def _train(cfg: TrainConfig, run_dir: Path, resume: bool, progress: bool, model, data, tensorboard: bool,
           ctx: Context, device: torch.device) -> TrainResult:
    """``train`` after its checks, under the run's process settings."""
    if not ctx.is_main:                       # wait until rank 0 holds the lock and has cleaned the directory
        broadcast_error(None, ctx, device)
        setup = _setup(cfg, model, data, device)
        return _train_loop(setup, run_dir, _start_state(setup, run_dir, resume), None, False, ctx)
    released = False
    board = None
    try:
        setup = _setup(cfg, model, data, device)   # every input checked; nothing written yet
        with run_lock(run_dir):               # one writer per run directory
            start = _start_state(setup, run_dir, resume)
            owner = _write_settings(setup, run_dir, resume, ctx)
            remove_stale_files(run_dir, run_dir / CHECKPOINTS, owner=owner)   # what a kill of this run left
            board = EpochBoard(run_dir) if tensorboard else None    # only rank 0 writes events
            broadcast_error(None, ctx, device)
            released = True
            return _train_loop(setup, run_dir, start, owner, progress, ctx, board)
    except Exception as exc:
        if not released:
            broadcast_error(str(exc) or type(exc).__name__, ctx, device)
        raise
    finally:
        if board is not None:
            board.close()


@dataclass
class _Setup:
    """What a training run starts from, built and checked before the run directory is touched."""
    cfg: TrainConfig
    device: torch.device
    dataset: Dataset
    model: torch.nn.Module
    method: Method
    optimizers: dict[str, torch.optim.Optimizer]
    mcfg: dict
    kind: str


@dataclass
class _Start:
    """Where the loop starts: epoch, early-stopping state, history and the random stream."""
    gen: torch.Generator
    epoch: int = 0
    best_valid: float = -math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list = dataclasses.field(default_factory=list)


def _setup(cfg: TrainConfig, model, data, device: torch.device) -> _Setup:
    if model is None:
        if cfg.model == CUSTOM:
            raise ConfigError("model 'custom' trains a model object: pass model=... (and data=...) to varinf.train")
        dataset, model, method = build_method(cfg, device)
        mcfg, kind = model.config.to_dict(), kind_of(model.config)
    else:
        check_amortized(model)
        if cfg.model != CUSTOM:
            cfg = dataclasses.replace(cfg, model=CUSTOM)
        if not isinstance(data, Dataset):
            raise ConfigError("a user model needs data=varinf.data.Dataset(name=..., train=..., valid=...), "
                              f"got {type(data).__name__}")
        dataset = check_training_data(data, require_binary=False).to(device)
        model = model.to(device)
        method = method_for(cfg, model, dataset.dim)
        mcfg, kind = {"class": f"{type(model).__module__}.{type(model).__qualname__}"}, CUSTOM
    return _Setup(cfg, device, dataset, model, method, optimizers_for(cfg, method), mcfg, kind)


def _start_state(s: _Setup, run_dir: Path, resume: bool) -> _Start:
    """Check the run directory's state against ``resume`` and read where to start; writes nothing."""
    cfg, ckpt_dir = s.cfg, run_dir / CHECKPOINTS
    refuse_link(ckpt_dir)
    has_checkpoint = (ckpt_dir / "last.json").exists()
    trained = trained_epochs(run_dir)
    if not resume and (has_checkpoint or trained):
        raise CheckpointError(f"{run_dir} already holds a training run; pass --resume to continue it "
                              "or choose another --out (nothing was overwritten)")
    start = _Start(_seeded(cfg.seed, s.device))
    if resume:
        saved = saved_config(run_dir)
        if saved is None:
            raise CheckpointError(NOTHING_TO_RESUME.format(run_dir=run_dir))
        refuse_changes(run_dir, saved.resolved().to_dict(), cfg.to_dict())
    if resume and not has_checkpoint:
        if trained:
            raise CheckpointError(f"cannot resume {run_dir}: {METRICS} records {trained} trained epoch(s) but "
                                  f"{ckpt_dir} holds no checkpoint (last.json); restore {CHECKPOINTS}/ from a copy, "
                                  "or start the run again under another --out (nothing was overwritten)")
        return start                          # stopped before its first checkpoint: start from epoch 1
    if not has_checkpoint:
        return start
    tensors, meta = read_checkpoint(ckpt_dir, "last")
    saved = config_from_saved(meta["config"], what=f"checkpoint {ckpt_dir / 'last.json'}").resolved()
    if saved.architecture_dict() != cfg.architecture_dict():
        diff = {k: (v, cfg.architecture_dict()[k]) for k, v in saved.architecture_dict().items()
                if cfg.architecture_dict()[k] != v}
        raise CheckpointError(f"cannot resume {run_dir}: its checkpoint was trained with other settings "
                              f"(saved vs now: {shown(diff)})")
    restore_training_state(tensors, meta, s.model, s.method, s.optimizers)
    try:
        start.gen.set_state(decode_rng_state(meta["rng_state"]))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {ckpt_dir / 'last.json'} has unreadable training state "
                              f"({shown(str(exc), 300)}); restore it from a copy or start a new run directory") from None
    start.epoch, start.history = meta["epoch"] + 1, meta["history"]
    best_valid, best_epoch, bad_epochs = meta["best_valid_elbo"], meta["best_epoch"], meta["bad_epochs"]
    start.best_valid, start.best_epoch, start.bad_epochs = best_valid, best_epoch, bad_epochs
    if stops_early(cfg.patience, bad_epochs):     # with the patience given now (it may change on resume)
        start.epoch = cfg.epochs              # nothing left to do
    elif start.epoch > cfg.epochs:
        raise ConfigError(f"cannot resume {run_dir} with epochs {cfg.epochs}: it has trained {start.epoch} epochs "
                          f"already; give --epochs {start.epoch} or more")
    return start


def _write_settings(s: _Setup, run_dir: Path, resume: bool, ctx: Context) -> str:
    """Write ``config.json`` (atomically; a new run's first file) and return the run's owner token.

    A new run gets a fresh random token (``run_id``); a resumed run keeps its own, and its
    config.json is rewritten with the settings it continues with (only resumable ones differ).
    """
    path = run_dir / CONFIG
    old = read_json(path) if resume else None
    run_id = old.get("run_id") if isinstance(old, dict) else None
    if not (isinstance(run_id, str) and _OWNER_TOKEN.fullmatch(run_id)):
        run_id = uuid.uuid4().hex[:16]        # a new run (or one started by a varinf without run ids)
    info = {"train": s.cfg.to_dict(), "model": s.mcfg, "model_kind": s.kind, "dataset": s.dataset.name,
            "method": s.cfg.method, "valid_elbo": s.method.validation_description, "world_size": ctx.world_size,
            "run_id": run_id}
    atomic_write_json(path, info, run_id)
    return run_id


def _train_loop(s: _Setup, run_dir: Path, start: _Start, owner: str | None, progress: bool,
                ctx: Context, board: EpochBoard | None = None) -> TrainResult:
    cfg, method, model, optimizers, dataset, device = s.cfg, s.method, s.model, s.optimizers, s.dataset, s.device
    mcfg, kind = s.mcfg, s.kind
    ckpt_dir = run_dir / CHECKPOINTS
    train_x, valid_x = dataset.split("train"), dataset.split("valid")
    gen, history = start.gen, start.history
    best_valid, best_epoch, bad_epochs = start.best_valid, start.best_epoch, start.bad_epochs
    if ctx.is_main:
        _write_metrics(run_dir, history, owner)

    stopped_early = start.epoch >= cfg.epochs and stops_early(cfg.patience, bad_epochs)
    n_batches = math.ceil(train_x.shape[0] / cfg.batch_size)
    checkpointed = _WithMethodState(model, method.state_module())
    for epoch in range(start.epoch, cfg.epochs):
        t0 = time.perf_counter()
        model.train()
        # the bar only on a terminal (disable=None) of the process that reports
        with tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, mininterval=0.5,
                  disable=None if progress and ctx.is_main else True) as bar:
            train_elbo = train_epoch(method, optimizers, train_x, cfg.batch_size, gen, dataset.dynamic_binarize, bar,
                                     ctx=ctx, autocast=cfg.autocast)
        sync_generator(gen, ctx)              # the same stream on every process (rank 0's) from here on
        if not math.isfinite(train_elbo):
            raise VarinfError(f"the training bound became {train_elbo} in epoch {epoch + 1}; lower the learning "
                              f"rate (now {cfg.lr}) or warm it up (--warmup-steps). The checkpoints of epoch "
                              f"{epoch} in {ckpt_dir} are intact.")
        model.eval()
        valid_elbo = validation_bound(method, valid_x, cfg, epoch, device, dataset.dynamic_binarize, ctx)
        if not math.isfinite(valid_elbo):
            raise VarinfError(f"the validation bound became {valid_elbo} in epoch {epoch + 1}; lower the learning "
                              f"rate (now {cfg.lr}) or warm it up (--warmup-steps). The checkpoints of epoch "
                              f"{epoch} in {ckpt_dir} are intact.")
        seconds = time.perf_counter() - t0
        history.append({"epoch": epoch + 1, "train_elbo": train_elbo, "valid_elbo": valid_elbo,
                        "seconds": seconds, "world_size": ctx.world_size})
        improved = valid_elbo > best_valid
        if improved:
            best_valid, best_epoch, bad_epochs = valid_elbo, epoch + 1, 0
        else:
            bad_epochs += 1
        stopped_early = stops_early(cfg.patience, bad_epochs)
        meta = {"config": cfg.to_dict(), "model": mcfg, "model_kind": kind, "epoch": epoch,
                "history": history, "best_valid_elbo": best_valid, "best_epoch": best_epoch,
                "bad_epochs": bad_epochs, "stopped_early": stopped_early,
                "rng_state": encode_rng_state(gen.get_state())}
        if ctx.is_main:                       # every process holds the same state; rank 0 writes it
            if improved:
                save_checkpoint(ckpt_dir, "best", model=checkpointed, optimizers=optimizers, meta=meta, owner=owner)
            save_checkpoint(ckpt_dir, "last", model=checkpointed, optimizers=optimizers, meta=meta, owner=owner)
            _write_metrics(run_dir, history, owner)
            if board is not None:
                board.epoch(history[-1], optimizers)
        if ctx.is_main:
            log.info("epoch %4d  train ELBO %9.3f  valid ELBO %9.3f  %6.1fs%s", epoch + 1, train_elbo, valid_elbo,
                     seconds, "  *" if improved else "")
        if stopped_early:
            if ctx.is_main:
                log.info("early stopping: no validation improvement for %d epochs (best %.3f at epoch %d)",
                         cfg.patience, best_valid, best_epoch)
            break
    note = None if stopped_early else still_rising([r["valid_elbo"] for r in history])
    if note and ctx.is_main:
        log.warning("%s", note)
    return TrainResult(run_dir, len(history), best_epoch, best_valid, stopped_early, history)


# load_model, load_method, load_weights, resume_config, saved_config and method_for live in varinf.runs and
# stay importable from here
__all__ = ["train", "train_epoch", "TrainResult", "build_method", "build_model", "model_config", "load_training_data",
           "optimizers_for"]
