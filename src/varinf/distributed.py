"""Data-parallel training and evaluation on ``torch.distributed`` (launched with ``torchrun``).

    torchrun --nproc_per_node N -m varinf train --out runs/x ...     # N processes, one run directory
    torchrun --nproc_per_node N -m varinf eval runs/x                # test points sharded over N processes

Backend: gloo on CPU, NCCL on CUDA (chosen from the run's device; each process takes
``cuda:LOCAL_RANK``). One process (no ``torchrun``, or ``WORLD_SIZE=1``) is the special case
``world_size = 1`` of the same code: every function here is then the identity.

**Why an explicit all-reduce and not DistributedDataParallel.** A method declares several
parameter groups, each with its own loss (``varinf.infer._base``: θ, φ and NVIL's ψ minimise
different surrogates, taken with one ``autograd.grad`` per loss). DDP hooks ``backward()`` of one
loss through one wrapped module; with per-group ``autograd.grad`` calls on a model that is
not the module DDP wraps, its reducer would either miss gradients or need
``find_unused_parameters`` and one DDP wrapper per group. Instead `apply_losses` calls one
hook, [`GradSync`][varinf.distributed.GradSync], after every group's gradient is computed and before any optimizer
steps: all gradients are flattened into one buffer and all-reduced once per step (one
collective, the same bytes DDP would send; the overlap of communication with backward that DDP
buys is small here because the backward of these networks is a few milliseconds).

**Sharded batches, noise independent of the number of processes.** Every process iterates the
same global minibatches (the permutation comes from the shared seed) and takes its contiguous
slice of rows ([`shard_bounds`][varinf.distributed.shard_bounds]). The training loop hands the method a random
stream that carries this slice, ``Stream(generator, Shard(start, stop, rows))`` (``varinf.streams``),
and every per-datapoint random draw of a step (``Family.draw`` in ``varinf.families``) draws the noise
of the *whole global batch* from the shared generator and keeps its own rows. So datapoint i gets the
same noise whatever N is, and the generators of all processes stay in step (each consumes
exactly what one process would). The cost is drawing B_global instead of B_local noise rows per
process: negligible against the decoder passes at N ≤ 8; on many GPUs a counter-based
generator keyed by (seed, step, global index) would remove it (not needed here).

The gradient of a batch mean is Σ_r (B_r / B) g_r, so [`GradSync`][varinf.distributed.GradSync] weights each process's
gradient by B_r / B before a SUM all-reduce (exact also for uneven shards). The parameters of N
processes then equal those of one process up to floating-point summation order: the batch
reduction inside each process's matmul and the all-reduce's sum are ordered differently from
one process's single reduction (relative error ~1e-7 per step, see tests/test_distributed.py).

Wake-sleep's sleep phase draws the dreams of the whole global batch the same way and keeps its
rows. The generators are re-synchronised from rank 0 at every epoch end
([`sync_generator`][varinf.distributed.sync_generator]).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from varinf.errors import ConfigError
from varinf.streams import Shard

__all__ = ["Context", "context", "init_from_env", "shard_bounds", "GradSync", "all_reduce_sum", "global_moments",
           "sync_generator", "broadcast_error", "process_device", "shutdown", "process_group"]


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank among ``world_size`` processes (rank 0 writes files)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def context() -> Context:
    """The current process group's rank and size (rank 0 of 1 when torch.distributed is not initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return Context()
    return Context(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def init_from_env(device: str) -> Context:
    """Join the process group that ``torchrun`` describes in the environment (WORLD_SIZE > 1), else do nothing.

    ``device`` "cpu" → gloo; "cuda"/"cuda:N" → NCCL with this process on ``cuda:LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return context()
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    # torch 2.13: when torch._dynamo is first imported *after* the group exists (the first optimizer
    # constructed imports it), one of the torch.distributed modules it loads keeps a reference to the
    # default group, so destroy_process_group() no longer joins gloo's worker threads. A gloo thread
    # still releasing the last collective's tensors then races the interpreter's exit and aborts the
    # process (SIGABRT, "terminate called without an active exception": 1 of 30 launches on
    # these 2-core machines). Imported first, nothing keeps the group alive
    # (tests/test_distributed.py checks that no gloo thread outlives process_group()).
    import torch._dynamo  # noqa: F401
    dist.init_process_group(backend=backend)
    return context()


def shutdown() -> None:
    """Leave the process group joined by [`init_from_env`][varinf.distributed.init_from_env] (nothing when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def process_group(device: str) -> Iterator[Context]:
    """Join torchrun's process group for the block ([`init_from_env`][varinf.distributed.init_from_env]) and leave it after ([`shutdown`][varinf.distributed.shutdown])."""
    ctx = init_from_env(device)
    try:
        yield ctx
    finally:
        shutdown()


def process_device(name: str, ctx: Context) -> str:
    """The device of this process: "cuda" under torchrun means ``cuda:LOCAL_RANK``; anything else is kept."""
    return f"cuda:{ctx.local_rank}" if ctx.active and name == "cuda" else name


def shard_bounds(rows: int, ctx: Context) -> tuple[int, int]:
    """Rows [start, stop) of a global batch of ``rows`` that process ``ctx.rank`` takes (torch.tensor_split's split)."""
    base, extra = divmod(rows, ctx.world_size)
    start = ctx.rank * base + min(ctx.rank, extra)
    return start, start + base + (ctx.rank < extra)


class GradSync:
    """Average the gradients of one step over processes, weighted by shard size: g = Σ_r (B_r / B) g_r.

    Called by [`varinf.infer._base.apply_losses`][varinf.infer._base.apply_losses] between the gradients and the optimizer
    steps. One flattened buffer, one SUM all-reduce per step. With one process it does nothing.
    """

    def __init__(self, weight: float, ctx: Context):
        self.weight, self.ctx = weight, ctx

    def __call__(self, params: list[torch.nn.Parameter]) -> None:
        if not self.ctx.active:
            return
        params = [p for p in params if p.grad is not None]
        # Which parameters got a gradient depends only on the graph, the same on every process, so every
        # process flattens the same list in the same order.
        flat = torch.cat([p.grad.reshape(-1) for p in params]).mul_(self.weight)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p in params:
            n = p.grad.numel()
            p.grad = flat[offset:offset + n].view_as(p.grad)
            offset += n


def all_reduce_sum(values: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Σ over processes of ``values`` (a new tensor; ``values`` itself with one process)."""
    if not ctx.active:
        return values
    out = values.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def global_moments(x: torch.Tensor, shard: Shard | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (biased) variance of all elements of ``x`` across the processes that share a batch.

    ``shard`` is the batch shard ``x`` was computed on (``Stream.shard``, ``varinf.streams``). Without a
    shard or with one process: ``x.mean()``, ``x.var(unbiased=False)`` exactly. N processes: each sends
    (n_r, mean_r, M2_r) and they are combined by Chan, Golub & LeVeque's (1979) pairwise update
    M2 = Σ M2_r + Σ n_r (mean_r − mean)², which keeps the two-pass accuracy.
    """
    ctx = context()
    if not ctx.active or shard is None:
        return x.mean(), x.var(unbiased=False)
    n = torch.tensor(float(x.numel()), dtype=x.dtype, device=x.device)
    mean_r = x.mean()
    m2_r = ((x - mean_r) ** 2).sum()
    mine = torch.stack([n, mean_r, m2_r])                                        # (3,)
    parts = [torch.empty_like(mine) for _ in range(ctx.world_size)]
    dist.all_gather(parts, mine)
    stats = torch.stack(parts)                                                   # (N, 3)
    counts, means, m2s = stats.unbind(1)
    total = counts.sum()
    mean = (counts * means).sum() / total
    m2 = m2s.sum() + (counts * (means - mean) ** 2).sum()
    return mean, m2 / total


def sync_generator(gen: torch.Generator, ctx: Context) -> None:
    """Give every process rank 0's generator state (a few KB, once per epoch)."""
    if not ctx.active:
        return
    state = gen.get_state()
    device = gen.device if gen.device.type == "cuda" else torch.device("cpu")
    buf = state.to(device)
    dist.broadcast(buf, src=0)
    gen.set_state(buf.cpu())


_MESSAGE_BYTES = 2048


def broadcast_error(message: str | None, ctx: Context, device: torch.device | str = "cpu") -> None:
    """Rank 0 tells the others whether its setup failed; a non-zero rank raises rank 0's error.

    The message travels as a fixed-size UTF-8 byte tensor (no pickling between processes).
    """
    if not ctx.active:
        return
    buf = torch.zeros(_MESSAGE_BYTES + 1, dtype=torch.uint8)
    if message is not None:
        raw = message.encode()[:_MESSAGE_BYTES]
        buf[0] = 1
        buf[1:1 + len(raw)] = torch.tensor(list(raw), dtype=torch.uint8)
    buf = buf.to(device)
    dist.broadcast(buf, src=0)
    buf = buf.cpu()
    if int(buf[0]) and not ctx.is_main:
        text = bytes(buf[1:].tolist()).rstrip(b"\0").decode(errors="replace")
        raise VarinfError(f"rank 0 stopped: {text}")
