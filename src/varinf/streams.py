"""A random stream: the generator a draw consumes and the rows of the minibatch it draws for.

Every per-datapoint draw in varinf (a family's ``draw``, ARM's uniforms, wake-sleep's dreams) takes a
``rng``: a ``torch.Generator``, ``None`` (torch's global generator) or a [`Stream`][varinf.streams.Stream].
A ``Stream(generator, shard)`` carries, besides the generator, the [`Shard`][varinf.streams.Shard] of the
global minibatch that this process computes under data parallelism (``varinf.distributed``): a draw
then produces the noise of all the global batch's rows and keeps its own, so datapoint i's noise does
not depend on the number of processes. The shard travels with the stream that the training loop hands
to the method; nothing is read from ambient state.

    rng                         draws                         rows kept
    torch.Generator or None     the local batch's rows        all
    Stream(g, None)             the local batch's rows        all
    Stream(g, Shard(a, b, n))   all n rows of the global batch  rows [a, b)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from varinf.errors import VarinfError

__all__ = ["Shard", "Stream", "Rng"]


@dataclass(frozen=True)
class Shard:
    """Rows [start, stop) of a global minibatch of ``rows`` rows: the slice one process computes."""

    start: int
    stop: int
    rows: int

    def check(self, local: int) -> None:
        """One-line error unless a draw over ``local`` rows is a draw over this shard's rows."""
        if local != self.stop - self.start:
            raise VarinfError(f"a per-datapoint draw of {local} rows inside a batch shard of {self.stop - self.start} "
                              "rows: only draws over the minibatch's rows can be sharded across processes")


@dataclass(frozen=True)
class Stream:
    """A generator and, under data parallelism, the shard of the global batch its draws are for."""

    generator: torch.Generator | None = None
    shard: Shard | None = None

    @staticmethod
    def of(rng: "Rng") -> "Stream":
        """``rng`` as a Stream: itself, or a generator (or None, the global RNG) with no shard."""
        return rng if isinstance(rng, Stream) else Stream(rng)

    def global_shape(self, shape: torch.Size | tuple[int, ...], dim: int = 0) -> tuple[int, ...]:
        """``shape`` with its batch dimension ``dim`` grown to the global batch (``shape`` itself without a shard)."""
        if self.shard is None:
            return tuple(shape)
        self.shard.check(shape[dim])
        return (*shape[:dim], self.shard.rows, *shape[dim + 1:])

    def local_rows(self, t: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """This process's rows of a global draw along ``dim`` (``t`` itself without a shard)."""
        if self.shard is None:
            return t
        return t.narrow(dim, self.shard.start, self.shard.stop - self.shard.start)

    def draw(self, sampler, shape: tuple[int, ...], like: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """``sampler(global shape, generator=, dtype=, device=)`` (``torch.randn``, ``torch.rand``) drawn for the
        global batch along ``dim`` and cut to this process's rows: ``shape`` with ``like``'s dtype and device."""
        return self.local_rows(sampler(self.global_shape(shape, dim), generator=self.generator, dtype=like.dtype,
                                       device=like.device), dim)

    def global_rows(self, t: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """``t`` (B_local, ...) at its rows of a (B_global, ...) tensor filled with ``fill`` (``t`` itself without a shard).

        For draws whose randomness consumed per element does not depend on the values (torch.bernoulli
        draws one uniform per element), so the other processes' rows only need a placeholder.
        """
        if self.shard is None:
            return t
        self.shard.check(t.shape[0])
        out = t.new_full((self.shard.rows, *t.shape[1:]), fill)
        out[self.shard.start:self.shard.stop] = t
        return out


# What every draw accepts as its random stream.
Rng = Stream | torch.Generator | None
