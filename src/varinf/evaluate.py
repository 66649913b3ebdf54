"""Test-set evaluation: ELBO and importance-sampled NLL with standard errors (``varinf eval``).

Protocol (Burda et al. 2016 §5.2; Hjelm et al. 2015 §7): for every test datapoint draw k = 5000
samples from q(h|x) and report

    test ELBO = mean_x (1/k) Σ_i log w⁽ⁱ⁾        (a bound: negative, in nats)
    test NLL  = −mean_x log (1/k) Σ_i w⁽ⁱ⁾       (positive, in nats)

with the standard error of each mean over datapoints. The binarized-MNIST test split is
ordered by class, so a subset is a uniform random one, never the first N.

Test-time refinement (Hjelm et al. 2015 §2; ``--refine-steps T``). The encoder's q is refined by
the run's own refiner (``varinf.refinement``: gradient steps for gbvi/mpvi/stvi, adaptive importance
sampling for avi; for a run without one, the family's default: gradient steps for Gaussian
latents, AVI for binary ones), and evaluated again: ``test_elbo_refined`` and ``test_nll_refined``
use q̃ as the ELBO's q and as the importance proposal (same k), and

    amortization_gap = test_elbo_refined − test_elbo     (nats, ≥ 0 up to Monte Carlo error)

is the part of the encoder's gap that T steps recover: a lower bound on the full amortisation
gap max_q L(q) − L(q_φ). Without refinement (T = 0, no sweep) the refined numbers and the gap
are ``null``: nothing was refined. ``--refine-sweep 0,1,2,5,...`` adds the mean bound after every listed T
(one refinement to the largest T, the bound of each z_t estimated with N fresh samples and the
closed-form entropy) to eval.json and draws ``figures/amortization_gap.png``. The refined
numbers use their own generators (stream 1), so ``test_elbo``/``test_nll`` are exactly those of
an evaluation without refinement.

Random draws: batch b of the test points gets its own generator keyed by (seed, stream, b)
([`batch_generator`][varinf.evaluate.batch_generator]), so a batch's numbers do not depend on which process evaluates it.
Under ``torchrun`` (``varinf.distributed``) process r evaluates batches r, r + N, r + 2N, ...
and the per-datapoint results are summed into place across processes (each row is written by
one process, the others add exact zeros): N processes give bit for bit the numbers of one. With
fewer batches than processes (a few points, large k) the k draws are split instead: each process
evaluates every N-th chunk of draws of every batch (``objectives.chunk_summaries``, which still
draws the other chunks so that chunk c's draws are the same in every process), and the per-chunk
sums are added across processes before being combined in chunk order, again bit for bit.

Resuming ([`PartialResults`][varinf.evaluate.PartialResults]). The same independence makes a long evaluation resumable:
finished batches are saved every ``FLUSH_SECONDS`` to ``RUN_DIR/eval.partial/`` (safetensors, each
process its own file, written atomically), keyed by a fingerprint of everything that decides the
numbers (weights, test points, k, batch and chunk sizes, seed, refiner). Killed at any instant, the
same command continues from them, under any number of processes, and gives the numbers of an
unbroken run. Once ``eval.json`` is written, the evaluation removes its own files (those of its
fingerprints) and the directory if nothing else is left in it: the saved progress of another,
interrupted evaluation (other settings) survives. ``eval.partial/`` and its ``.lock`` must not be
symbolic links; a partial file whose batches hold other row counts than the fingerprint implies,
or non-finite values, is ignored with a warning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from varinf.checkpoint import atomic_write_bytes, atomic_write_json, save_figure
from varinf.config import TrainConfig
from varinf.contract import posterior
from varinf.data import check_data, load_dataset
from varinf.distributed import Context, all_reduce_sum, broadcast_error, context, process_device
from varinf.errors import CheckpointError, ConfigError, VarinfError
from varinf.infer import DEFAULT_REFINERS, METHODS
from varinf.objectives import chunk_summaries, combine_chunks, entropy_bound
from varinf.refinement import Refiner
from varinf.runfiles import is_regular_file, real_dir, refuse_link, shown
from varinf.runlock import LOCK_NAME, RunLockedError, run_lock
from varinf.runs import load_model

SWEEP_SAMPLES = 20          # samples per bound estimate in a --refine-sweep trace
FLUSH_SECONDS = 30.0        # finished batches are saved at most this often (a kill loses less than this)
PARTIAL_FORMAT = "varinf-eval-partial-1"

log = logging.getLogger("varinf")


def _mean_and_stderr(values: torch.Tensor) -> tuple[float, float | None]:
    """Mean and its standard error (None for a single value: undefined, and JSON has no NaN)."""
    n = values.numel()
    mean = values.mean().item()
    stderr = values.std(unbiased=True).item() / math.sqrt(n) if n > 1 else None
    return mean, stderr


def batch_generator(seed: int, stream: int, batch: int, device: torch.device) -> torch.Generator:
    """The generator of test batch ``batch``: seeded by numpy's SeedSequence of (seed, stream, batch)."""
    key = int(np.random.SeedSequence([seed, stream, batch]).generate_state(1, np.uint64)[0]) >> 1
    return torch.Generator(device=device).manual_seed(key)


# Decoder-output floats per chunk of importance samples: on a CPU ~1M (4 MB: the chunk's
# activations stay in the caches; 40M ran the CPU evaluation at half the speed,
# benchmarks/bench_eval.py); on a GPU 40M (big kernels, few launches).
CHUNK_FLOATS = {"cpu": 1_000_000, "cuda": 40_000_000}


def _chunk(nll_samples: int, batch_size: int, dim: int, device: torch.device | str = "cpu") -> int:
    """Samples per chunk that keep a chunk's decoder output near CHUNK_FLOATS[device type] floats."""
    budget = CHUNK_FLOATS.get(torch.device(device).type, CHUNK_FLOATS["cuda"])
    return max(1, min(nll_samples, budget // max(1, batch_size * dim)))


def fingerprint(model, x: torch.Tensor, **settings) -> str:
    """SHA-256 of what decides an evaluation's numbers: the model's tensors, the test points, ``settings``
    and the versions of varinf and torch (a new version may draw or round differently)."""
    from varinf import __version__

    settings = dict(settings, versions=(__version__, torch.__version__))
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for name, t in [*model.state_dict().items(), ("x", x)]:
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class PartialResults:
    """Finished batches of one evaluation pass, saved in ``directory`` so that a killed evaluation resumes.

    Each process writes its own file ``<stream>-<rank>-<random>.safetensors`` (atomically, at most
    every ``FLUSH_SECONDS``), holding the batches it evaluated in this invocation: files are never
    rewritten by another process, so no finished batch is lost whatever is killed when. ``load``
    reads every file whose fingerprint matches (others belong to another evaluation and are ignored).
    """

    def __init__(self, directory: Path, key: str, stream: int, ctx: Context, total: int,
                 rows: tuple[int, int] | None = None):
        self.directory, self.key, self.total, self.loaded, self.rank = Path(directory), key, total, 0, ctx.rank
        self.rows = rows                           # (test points, batch size): the row count of every batch
        self.path = self.directory / f"{stream}-{ctx.rank}-{uuid.uuid4().hex[:8]}.safetensors"
        self.new: dict[int, dict[str, torch.Tensor]] = {}
        self.saved_at = time.monotonic()

    def load(self) -> dict[int, dict[str, torch.Tensor]]:
        """batch -> {"elbo": (b,), "log_px": (b,)[, "sweep": (T', b)]} from every matching file."""
        done: dict[int, dict[str, torch.Tensor]] = {}
        for path in sorted(self.directory.glob("*.safetensors")):
            try:
                with safe_open(str(path), framework="pt") as f:
                    meta = f.metadata() or {}
                    if meta.get("format") != PARTIAL_FORMAT or meta.get("fingerprint") != self.key:
                        continue
                    t = {name: f.get_tensor(name) for name in f.keys()}
                bounds = t["bounds"].tolist()                                  # (n_b + 1,) offsets
                batches = t["batches"].tolist()
                if len(bounds) != len(batches) + 1 or bounds[0] != 0:
                    raise ValueError("batch offsets do not fit the batches")
                values = {k: v for k, v in t.items() if k not in ("batches", "bounds")}
                if not {"elbo", "log_px"} <= set(values) or any(v.shape[-1] != bounds[-1] for v in values.values()):
                    raise ValueError("its arrays do not hold the rows its offsets name")
                if not all(bool(torch.isfinite(v).all()) for v in values.values()):
                    raise ValueError("it holds NaN or infinite values")
                found = {}
                for j, b in enumerate(batches):
                    if not 0 <= b < self.total:
                        raise ValueError(f"batch {b} out of range")
                    lo, hi = bounds[j], bounds[j + 1]
                    if self.rows is not None and hi - lo != min(self.rows[1], self.rows[0] - b * self.rows[1]):
                        raise ValueError(f"batch {b} holds {hi - lo} rows, not the {self.rows[1]} of its batch")
                    found[b] = {k: v[..., lo:hi] for k, v in values.items()}
                done.update(found)
            except (SafetensorError, OSError, KeyError, ValueError, IndexError, RuntimeError) as exc:
                log.warning("ignoring unreadable partial evaluation file %s (%s)", path, shown(str(exc), 120))
        self.loaded = len(done)
        return done

    def add(self, batch: int, values: dict[str, torch.Tensor]) -> None:
        self.new[batch] = {k: v.detach().cpu() for k, v in values.items()}
        if time.monotonic() - self.saved_at >= FLUSH_SECONDS:
            self.save()

    def save(self) -> None:
        if not self.new:
            return
        batches = sorted(self.new)
        sizes = [self.new[b]["elbo"].shape[-1] for b in batches]
        tensors = {k: torch.cat([self.new[b][k] for b in batches], dim=-1).contiguous() for k in self.new[batches[0]]}
        tensors["batches"] = torch.tensor(batches, dtype=torch.int64)
        tensors["bounds"] = torch.tensor(np.concatenate([[0], np.cumsum(sizes)]), dtype=torch.int64)
        atomic_write_bytes(self.path, save(tensors, metadata={"format": PARTIAL_FORMAT, "fingerprint": self.key}),
                           owner=self.key[:16])
        self.saved_at = time.monotonic()
        log.info("eval: %d batches saved by process %d in %s (%d of the %d batches were saved before this run)",
                 len(self.new), self.rank, self.directory, self.loaded, self.total)


class PartialDir:
    """The ``eval.partial/`` directory of one evaluation (``resumable`` yields it): its path and the
    fingerprints this evaluation used, whose files (and only those) it removes when it is done."""

    def __init__(self, path: Path):
        self.path, self.keys = Path(path), set()

    def __fspath__(self) -> str:
        return str(self.path)

    def remove_own(self) -> None:
        """Delete this evaluation's partial and temporary files; then the directory if only its lock is left."""
        owners = {key[:16] for key in self.keys}
        for path in self.path.iterdir():
            ours = False
            if path.name.endswith(".tmp"):
                ours = any(f".{owner}." in path.name for owner in owners)
            elif path.suffix == ".safetensors" and is_regular_file(path):
                try:
                    with safe_open(str(path), framework="pt") as f:
                        meta = f.metadata() or {}
                    ours = meta.get("format") == PARTIAL_FORMAT and meta.get("fingerprint") in self.keys
                except (SafetensorError, OSError):
                    ours = False
            if ours and is_regular_file(path):
                path.unlink()
        left = [p.name for p in self.path.iterdir()]
        if left == [LOCK_NAME] and is_regular_file(self.path / LOCK_NAME):
            (self.path / LOCK_NAME).unlink()       # still under the lock: no newcomer writes into it meanwhile
            self.path.rmdir()


@contextmanager
def resumable(directory: Path | None, ctx: Context, device: torch.device | str = "cpu") -> Iterator[PartialDir | None]:
    """Hold ``directory`` for one evaluation; remove this evaluation's files after a normal exit (and the
    directory when nothing else is left in it); after a failure keep what it saved for the next run of
    the command. Files of other evaluations (other fingerprints) are never removed.

    Process 0 holds its writer lock: a second evaluation of the same output is refused
    (RunLockedError, on every process of the refused one). A symbolic link at ``directory`` or at its
    lock is refused (CheckpointError) before anything is written.
    """
    if directory is None:
        yield None
        return
    partial = PartialDir(directory)
    with ExitStack() as stack:
        error = None
        if ctx.is_main:
            try:
                created = not os.path.lexists(partial.path)
                real_dir(partial.path)
                if created:
                    stack.callback(_remove_if_only_lock, partial.path)
                stack.enter_context(run_lock(partial.path, hint="choose another --output"))
            except (RunLockedError, CheckpointError) as exc:
                error = (type(exc), str(exc))
        broadcast_error(error and error[1], ctx, device)
        if error is not None:
            raise error[0](error[1])
        yield partial
        if ctx.is_main:                            # still under the lock
            partial.remove_own()


def _remove_if_only_lock(path: Path) -> None:
    """After a failure that saved nothing: remove the directory this evaluation created, if only its lock is in it."""
    try:
        if [p.name for p in path.iterdir()] == [LOCK_NAME] and is_regular_file(path / LOCK_NAME):
            (path / LOCK_NAME).unlink()
            path.rmdir()
    except OSError:
        pass


@torch.no_grad()
def evaluate_model(model, x: torch.Tensor, *, nll_samples: int = 5000, batch_size: int = 100,
                   chunk_size: int | None = None, seed: int = 0, progress: bool = False,
                   refiner: Refiner | None = None, sweep: tuple[int, ...] = (),
                   ctx: Context | None = None, resume_dir: str | Path | None = None) -> dict[str, torch.Tensor]:
    """Per-datapoint ELBO and log p̂(x) for every row of ``x`` (N, D), with q the model's encoder.

    With ``refiner``, q is the encoder's q refined by it (generator stream 1 for the refined draws).
    Works for any amortised model (``varinf.contract``). Returns {"elbo": (N,), "log_px": (N,)} and,
    with ``sweep`` (refinement step counts), "sweep": (len(sweep), N), the bound after each T.
    Under data parallelism (``ctx``, default the current process group) the batches are shared
    out round-robin and every process returns the full result. With ``resume_dir`` finished batches
    are saved there and those already there (same fingerprint) are not evaluated again
    ([`PartialResults`][varinf.evaluate.PartialResults]); the caller removes them when it no longer needs them (``resumable``).
    """
    if isinstance(nll_samples, bool) or not isinstance(nll_samples, int) or nll_samples < 1:
        raise ConfigError(f"nll_samples must be an integer >= 1, got {nll_samples!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    device = next(model.parameters()).device
    ctx = ctx or context()
    refiner = refiner.for_model(model) if refiner is not None else None     # a deep SBN: every layer
    if refiner is not None:
        refiner.check(model)                    # the family-fit check of evaluation
    stream = 1 if refiner is not None else 0
    chunk_size = chunk_size or _chunk(nll_samples, batch_size, x.shape[1], device)
    sweep = tuple(sorted(set(int(t) for t in sweep)))
    final = refiner.steps if refiner is not None else 0
    if refiner is not None and sweep:
        refiner = refiner.with_steps(max(final, max(sweep)))
    n, dtype = x.shape[0], next(model.parameters()).dtype
    x = x.to(device)                                                         # resident on the device
    out = {"elbo": torch.zeros(n, dtype=dtype, device=device),                       # (N,)
           "log_px": torch.zeros(n, dtype=dtype, device=device)}                     # (N,)
    if sweep:
        out["sweep"] = torch.zeros(len(sweep), n, dtype=dtype, device=device)       # (T', N)
    n_batches = -(-n // batch_size)
    partial, done = None, {}
    if resume_dir is not None:
        key = fingerprint(model, x, nll_samples=nll_samples, batch_size=batch_size, chunk_size=chunk_size, seed=seed,
                          stream=stream, refiner=refiner.settings() if refiner is not None else None, sweep=sweep,
                          final=final, dtype=str(dtype))
        if not isinstance(resume_dir, PartialDir):
            resume_dir = PartialDir(resume_dir)
        resume_dir.keys.add(key)
        partial = PartialResults(resume_dir.path, key, stream, ctx, n_batches, rows=(n, batch_size))
        done = partial.load()
        _check_same_view(done, ctx, device, resume_dir)
        if done and ctx.is_main:
            log.info("resuming: %d of %d batches already evaluated (%s)", len(done), n_batches, resume_dir)
        if ctx.is_main:                            # rows already done come from process 0 alone
            for b, values in done.items():
                rows = slice(b * batch_size, b * batch_size + values["elbo"].shape[-1])
                for k, v in values.items():
                    out[k][..., rows] = v.to(device=device, dtype=dtype)
    todo = [b for b in range(n_batches) if b not in done]
    # Fewer batches than processes: every process takes every batch and a share of its k draws
    # (chunks round-robin, summed across processes), and process 0 alone writes the rows.
    split_k = ctx.active and len(todo) < ctx.world_size
    batches = todo if split_k else todo[ctx.rank::ctx.world_size]             # this process's share, round-robin
    share, writes = ((ctx.rank, ctx.world_size), ctx.is_main) if split_k else ((0, 1), True)
    what = "eval" if refiner is None else f"eval (refined, T={refiner.steps})"
    n_mine, started = len(batches), time.perf_counter()
    if progress and ctx.is_main:
        from tqdm.auto import tqdm
        batches = tqdm(batches, desc=what, disable=None, leave=False)
    for j, b in enumerate(batches):
        if j == 1 and ctx.is_main:              # the first batch timed: announce the cost of the rest
            announce_cost(what, time.perf_counter() - started, n_mine, nll_samples)
        i = b * batch_size
        rows = slice(i, i + batch_size)
        gen = batch_generator(seed, stream, b, device)
        xb = x[rows]
        q = posterior(model, xb) if refiner is None else refiner.start(model, xb)    # q_φ
        if refiner is not None:
            trace = []
            for t, q_t in enumerate(refiner.iterate(model, q, xb, gen)):
                if t in sweep:
                    trace.append(entropy_bound(model, q_t, xb, SWEEP_SAMPLES, gen))
                if t == final:
                    q_final = q_t
            q = q_final                                                                  # the refined q̃
            if sweep and writes:
                out["sweep"][:, rows] = torch.stack(trace)
        summaries = chunk_summaries(model, q, xb, nll_samples, chunk_size, gen, share)
        if split_k:
            summaries = all_reduce_sum(summaries, ctx)                       # (C, 2, B): every chunk, once
        if writes:
            out["elbo"][rows], out["log_px"][rows] = combine_chunks(summaries, nll_samples)
            if partial is not None:
                partial.add(b, {k: v[..., rows] for k, v in out.items()})
    if partial is not None:
        partial.save()
    # one collective per tensor; each row comes from one process and the others add exact zeros
    return {k: all_reduce_sum(v, ctx).cpu() for k, v in out.items()}


#: a pass announced as longer than this is logged as a warning, so that --quiet shows it too
LONG_EVAL_SECONDS = 1800


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def announce_cost(what: str, first_batch_seconds: float, n_batches: int, nll_samples: int) -> float:
    """Log what the rest of an evaluation pass will cost, from the time of its first batch; returns the estimate.

    Called once the first of this process's ``n_batches`` batches is done (the others take about as long:
    the same k, batch size and model). At INFO; at WARNING when the pass takes more than
    ``LONG_EVAL_SECONDS``, with how to stop it and resume.
    """
    rest = first_batch_seconds * (n_batches - 1)
    message = (f"{what}: the first of {n_batches} batches took {_duration(first_batch_seconds)} "
               f"(k = {nll_samples} importance samples per test point); the rest of this pass will take "
               f"about {_duration(rest)}")
    if rest > LONG_EVAL_SECONDS:
        log.warning("%s. Interrupted (Ctrl-C), the same command resumes from the saved batches; --subset N or "
                    "--nll-samples K make it shorter.", message)
    else:
        log.info("%s.", message)
    return rest


def _check_same_view(done: dict, ctx: Context, device: torch.device, directory) -> None:
    """All processes must resume from the same finished batches, else they would share out different work."""
    if not ctx.active:
        return
    mine = torch.tensor([len(done), sum(done)], dtype=torch.float64, device=device)
    if not torch.equal(all_reduce_sum(mine, ctx), mine * ctx.world_size):
        raise VarinfError(f"the processes see different partial results in {directory} (is it on a filesystem "
                          "shared by all of them?); remove it to evaluate from the start")


def run_refiner(cfg: TrainConfig, family: str, **overrides) -> Refiner:
    """The refiner of a run: its method's own (gbvi, mpvi, stvi, avi, savae), else the family's default.

    ``overrides`` (refine_steps, inference_rate, refine_optimizer, refine_samples, avi_rate; None =
    the run's) pass through TrainConfig's validation; one that the chosen refiner does not read is
    refused (e.g. --inference-rate for an AVI refiner, whose step is --avi-rate).
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        cfg = dataclasses.replace(cfg, **given)
    except TypeError as exc:
        raise ConfigError(str(exc)) from None
    build = METHODS[cfg.method].refiner or DEFAULT_REFINERS[family]
    refiner = build(cfg.resolved())
    unread = sorted(set(given) - set(refiner.reads))
    if unread:
        flags = ", ".join("--" + k.replace("_", "-") for k in unread)
        reads = ", ".join("--" + k.replace("_", "-") for k in refiner.reads)
        raise ConfigError(f"{flags} does not apply to this run's refiner ({refiner.name}, {refiner.equation}); "
                          f"it reads {reads}")
    return refiner


def plot_amortization_gap(steps: list[int], bounds: torch.Tensor, path: Path, title: str = "",
                          subtitle: str = "") -> Path:
    """The bound gained by T refinement steps over the first swept T (T = 0: the encoder's q): the amortisation gap.

    ``bounds`` (T', N) holds each test point's bound after each of ``steps``. Each point of the
    figure is the mean over test points of the *paired* difference bound_T(x) − bound_T0(x), its
    error bar ± 2 standard errors of that per-datapoint difference: the encoder-to-encoder spread
    between test points, which is most of the bound's own standard error, cancels.
    """
    from matplotlib.figure import Figure     # drawn to a file: no pyplot, no backend chosen globally

    gains = [_mean_and_stderr(row - bounds[0]) for row in bounds]           # paired over test points
    mean = [m for m, _ in gains]
    err = [2 * se if math.isfinite(se) else 0.0 for _, se in gains]
    base = "the encoder's q (T = 0)" if steps[0] == 0 else f"T = {steps[0]}"
    fig = Figure(figsize=(6, 4.5), layout="constrained")
    ax = fig.subplots()
    xs = [max(t, 0.5) for t in steps]   # T = 0 drawn at 0.5 on the log axis
    ax.errorbar(xs, mean, yerr=err, marker="o", capsize=3,
                label=f"mean gain ± 2 s.e. of the paired difference\n(over {bounds.shape[1]} test points)")
    ax.axhline(0.0, color="grey", lw=0.8, ls="--", label=base)
    ax.set_xscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels([str(t) for t in steps])
    ax.minorticks_off()
    ax.set_xlabel("refinement steps T")
    ax.set_ylabel(f"test bound gain over {'T = 0' if steps[0] == 0 else base} (nats)")
    fig.suptitle(title or "amortisation gap", fontsize=11)
    ax.set_title(subtitle, fontsize=8, color="dimgrey")
    fig.legend(loc="outside lower center", fontsize=8, ncols=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, path, dpi=120)


def _check_finite_result(result: dict, run_dir: Path, checkpoint: str) -> None:
    """VarinfError naming the numbers of ``result`` that are NaN or infinite (eval.json is JSON: no NaN)."""
    bad = sorted(k for k, v in result.items() if isinstance(v, float) and not math.isfinite(v))
    bad += [f"refine_sweep T={r['steps']}" for r in result.get("refine_sweep", ())
            if any(isinstance(v, float) and not math.isfinite(v) for v in r.values())]
    if bad:
        raise VarinfError(f"the evaluation of {run_dir} ({checkpoint} checkpoint) gave non-finite {', '.join(bad)}; "
                          "nothing was written. The model gives a probability of 0 (or NaN) to some test points: "
                          "check the checkpoint, or the test data against the training data")


def evaluate_run(run_dir: str | Path, *, nll_samples: int = 5000, subset: int | None = None,
                 batch_size: int = 100, checkpoint: str = "best", device: str = "cpu", seed: int = 0,
                 data_dir: str | None = None, progress: bool = False, write: bool = True,
                 refine_steps: int | None = None, inference_rate: float | None = None,
                 refine_optimizer: str | None = None, refine_samples: int | None = None,
                 avi_rate: float | None = None, refine_sweep: tuple[int, ...] | None = None,
                 output: str | Path | None = None) -> dict:
    """Evaluate a trained run on its dataset's test split and write ``RUN_DIR/eval.json`` (or ``output``).

    With ``output`` the result goes there and the sweep's figure beside it
    (``<output stem>_amortization_gap.png``), so an earlier ``eval.json`` is kept.

    The refinement settings default to the run's own (T = 0 for a method without refinement).
    """
    if refine_sweep is not None and any(isinstance(t, bool) or not isinstance(t, int) or t < 0 for t in refine_sweep):
        raise ConfigError(f"--refine-sweep steps must be integers >= 0, got {list(refine_sweep)}")
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int) or subset < 1):
        raise ConfigError(f"--subset must be an integer >= 1, got {subset!r}")
    run_dir = Path(run_dir)
    output = Path(output) if output is not None else run_dir / "eval.json"
    if output.is_dir():
        raise ConfigError(f"--output {output} is a directory; give a file path such as {output / 'eval.json'}")
    figure = (run_dir / "figures" / "amortization_gap.png" if output == run_dir / "eval.json"
              else output.with_name(f"{output.stem}_amortization_gap.png"))
    if write:                                  # before hours of work: nothing is written through a link
        for path in (output, output.with_suffix(".partial"), figure):
            refuse_link(path)
        if figure.parent == run_dir / "figures":
            refuse_link(figure.parent)
    t0 = time.perf_counter()
    ctx = context()
    device = process_device(device, ctx)
    model, cfg, meta = load_model(run_dir, checkpoint, device)
    refiner = run_refiner(cfg, model.family.name, refine_steps=refine_steps, inference_rate=inference_rate,
                          refine_optimizer=refine_optimizer, refine_samples=refine_samples, avi_rate=avi_rate)
    dataset = load_dataset(cfg.dataset, data_dir or cfg.data_dir, binarize=cfg.binarize)
    x = dataset.split("test")
    if dataset.dynamic_binarize:   # a fixed binarization of the test set, drawn once from the seed
        x = torch.bernoulli(x, generator=torch.Generator().manual_seed(seed + 12345))
    x = check_data(x, what=f"{dataset.name} test split", require_binary=model.likelihood.binary_data,
                   dim=model.config.data_dim)
    n_total = x.shape[0]
    if subset is not None and subset < n_total:
        idx = torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:subset]
        x = x[idx]
    resume = output.with_suffix(".partial") if write else None   # finished batches, kept until eval.json is written
    with resumable(resume, ctx, device) as resume_dir:
        plain = evaluate_model(model, x, nll_samples=nll_samples, batch_size=batch_size, seed=seed, progress=progress,
                               resume_dir=resume_dir)
        elbo_mean, elbo_se = _mean_and_stderr(plain["elbo"])
        lpx_mean, lpx_se = _mean_and_stderr(plain["log_px"])
        result = {
            "dataset": dataset.name,
            "checkpoint": checkpoint,
            "checkpoint_epoch": meta["epoch"] + 1,
            "test_points": int(x.shape[0]),
            "test_points_total": int(n_total),
            "nll_samples": nll_samples,
            "test_elbo": elbo_mean,
            "test_elbo_stderr": elbo_se,
            "test_nll": -lpx_mean,
            "test_nll_stderr": lpx_se,
            "likelihood": model.likelihood.name,
            "unit": model.likelihood.unit,                    # of every bound and NLL here
            "unit_note": model.likelihood.unit_note,
            "seconds": time.perf_counter() - t0,
            "device": str(device),
            "seed": seed,
        }
        sweep = tuple(sorted(set(refine_sweep or ())))
        result.update(refiner=refiner.settings())
        if refiner.steps == 0 and not sweep:       # no refinement ran: nothing refined was measured (null)
            result.update(test_elbo_refined=None, test_elbo_refined_stderr=None, test_nll_refined=None,
                          test_nll_refined_stderr=None, amortization_gap=None, amortization_gap_stderr=None)
        else:
            ref = evaluate_model(model, x, nll_samples=nll_samples, batch_size=batch_size, seed=seed, progress=progress,
                                 refiner=refiner, sweep=sweep, resume_dir=resume_dir)
            bad = int((~torch.isfinite(ref["elbo"]) | ~torch.isfinite(ref["log_px"])).sum())
            if bad:
                raise VarinfError(
                    f"test-time refinement diverged: non-finite bound for {bad} of {x.shape[0]} test points after "
                    f"{refiner!r}; use a smaller --inference-rate or --refine-optimizer adam")
            r_elbo, r_elbo_se = _mean_and_stderr(ref["elbo"])
            r_lpx, r_lpx_se = _mean_and_stderr(ref["log_px"])
            gap, gap_se = _mean_and_stderr(ref["elbo"] - plain["elbo"])       # paired over datapoints
            result.update(test_elbo_refined=r_elbo, test_elbo_refined_stderr=r_elbo_se, test_nll_refined=-r_lpx,
                          test_nll_refined_stderr=r_lpx_se, amortization_gap=gap, amortization_gap_stderr=gap_se)
            if sweep:
                table = []
                for t, row in zip(sweep, ref["sweep"]):
                    m, se = _mean_and_stderr(row)
                    table.append({"steps": t, "test_elbo": m, "test_elbo_stderr": se})
                for row, bounds in zip(table, ref["sweep"]):
                    row["gap"] = row["test_elbo"] - table[0]["test_elbo"] if sweep[0] == 0 else None
                    # the standard error of the gap: paired over test points
                    row["gap_stderr"] = _mean_and_stderr(bounds - ref["sweep"][0])[1] if sweep[0] == 0 else None
                result["refine_sweep"] = table
                result["refine_sweep_note"] = (f"bound of q~ after T steps, each estimated with {SWEEP_SAMPLES} "
                                               "fresh samples + closed-form entropy; gap relative to T = 0, "
                                               "gap_stderr paired over test points")
                if write and ctx.is_main:
                    path = plot_amortization_gap(list(sweep), ref["sweep"], figure,
                                                 f"amortisation gap: {dataset.name}, {cfg.method}",
                                                 f"refiner: {refiner!r}")
                    result["amortization_gap_figure"] = str(path)
        result["seconds"] = time.perf_counter() - t0
        result["world_size"] = ctx.world_size
        _check_finite_result(result, run_dir, checkpoint)
        if write and ctx.is_main:
            atomic_write_json(output, result)
    return result
