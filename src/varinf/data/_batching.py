"""Minibatches drawn from one tensor, with no per-item Python work."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..errors import DataError

__all__ = ["iterate_batches", "num_batches"]


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """Number of batches per epoch over ``n`` items."""
    if batch_size <= 0:
        raise DataError(f"batch_size must be positive, got {batch_size}")
    if n < 0:
        raise DataError(f"n must be non-negative, got {n}")
    return n // batch_size if drop_last else -(-n // batch_size)


def iterate_batches(
    x: torch.Tensor,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    shuffle: bool = True,
    drop_last: bool = False,
    dynamic_binarize: bool = False,
) -> Iterator[torch.Tensor]:
    """Yield one epoch of minibatches (B, ...) of ``x`` (N, ...), on ``x``'s device.

    With ``shuffle`` a permutation is drawn once, at call time, with
    ``torch.randperm(N, generator=generator)`` on the generator's device;
    batches are ``x.index_select(0, idx)``. Without it, batches are
    contiguous views. ``dynamic_binarize`` redraws each batch as
    Bernoulli(batch) using ``generator``. The same generator state gives the
    same batches.
    """
    if not isinstance(x, torch.Tensor):
        raise DataError(f"iterate_batches expects a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 0:
        raise DataError("iterate_batches expects a tensor with a leading item dimension, got a scalar")
    if dynamic_binarize and not x.is_floating_point():
        raise DataError(f"dynamic_binarize needs floating-point probabilities, got dtype {x.dtype}")
    n = int(x.shape[0])
    nb = num_batches(n, batch_size, drop_last)
    perm = None
    if shuffle:
        gen_device = generator.device if generator is not None else x.device
        perm = torch.randperm(n, generator=generator, device=gen_device)
        if perm.device != x.device:
            perm = perm.to(x.device)
    return _batches(x, batch_size, nb, perm, generator, dynamic_binarize)


def _bernoulli(p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    if generator is None or generator.device == p.device:
        return torch.bernoulli(p, generator=generator)
    u = torch.rand(p.shape, generator=generator, device=generator.device, dtype=p.dtype).to(p.device)
    return (u < p).to(p.dtype)


def _batches(
    x: torch.Tensor,
    batch_size: int,
    nb: int,
    perm: torch.Tensor | None,
    generator: torch.Generator | None,
    dynamic_binarize: bool,
) -> Iterator[torch.Tensor]:
    for b in range(nb):
        lo = b * batch_size
        hi = lo + batch_size
        batch = x[lo:hi] if perm is None else x.index_select(0, perm[lo:hi])
        yield _bernoulli(batch, generator) if dynamic_binarize else batch
