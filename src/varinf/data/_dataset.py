"""The [`Dataset`][varinf.data._dataset.Dataset] container."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from ..errors import DataError, DatasetNotFoundError

__all__ = ["Dataset", "SPLITS"]

SPLITS: tuple[str, ...] = ("train", "valid", "test")


@dataclass
class Dataset:
    """A dataset split into train/valid/test matrices.

    Each split is a float32 tensor of shape (N, D) with values in [0, 1], or
    ``None`` when it is not available (its name is then in ``missing`` and
    ``missing_reasons[name]`` says why and which files it would need).

    ``binary``: values are exactly 0/1. ``dynamic_binarize``: values are grey
    levels and every batch should be redrawn as Bernoulli(x) each time it is
    used (see `iterate_batches`). ``labels`` maps split names to int64
    tensors (N,) where labels exist. ``image_shape`` is (H, W) with H*W == D,
    or ``None``.
    """

    name: str
    train: torch.Tensor | None = None
    valid: torch.Tensor | None = None
    test: torch.Tensor | None = None
    image_shape: tuple[int, int] | None = None
    labels: dict[str, torch.Tensor] = field(default_factory=dict)
    binary: bool = False
    dynamic_binarize: bool = False
    missing_reasons: dict[str, str] = field(default_factory=dict)
    source: str | None = None
    missing: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        self.missing = tuple(s for s in SPLITS if getattr(self, s) is None)
        self.missing_reasons = dict(self.missing_reasons)
        dims = set()
        for s in SPLITS:
            t = getattr(self, s)
            if t is None:
                continue
            if not isinstance(t, torch.Tensor) or t.ndim != 2:
                raise DataError(f"dataset {self.name!r}: split {s!r} must be a 2-D tensor (N, D)")
            dims.add(int(t.shape[1]))
        if len(dims) > 1:
            raise DataError(f"dataset {self.name!r}: splits have different feature dimensions {sorted(dims)}")
        if self.image_shape is not None and dims:
            h, w = self.image_shape
            if h * w not in dims:
                raise DataError(f"dataset {self.name!r}: image_shape {self.image_shape} does not match D={dims.pop()}")
        for s, y in self.labels.items():
            x = getattr(self, s, None) if s in SPLITS else None
            if x is None:
                raise DataError(f"dataset {self.name!r}: labels given for unavailable split {s!r}")
            if y.shape != (x.shape[0],):
                raise DataError(f"dataset {self.name!r}: labels for {s!r} have shape {tuple(y.shape)}, expected ({x.shape[0]},)")
        if self.binary and self.dynamic_binarize:
            raise DataError(f"dataset {self.name!r}: binary and dynamic_binarize are mutually exclusive")
        for s in self.missing:
            self.missing_reasons.setdefault(s, f"split {s!r} is not part of dataset {self.name!r}")

    @property
    def dim(self) -> int:
        """Number of features D per item."""
        for s in SPLITS:
            t = getattr(self, s)
            if t is not None:
                return int(t.shape[1])
        raise DataError(f"dataset {self.name!r} has no available split")

    def split(self, name: str) -> torch.Tensor:
        """Return split ``name`` (N, D); raise DatasetNotFoundError if it is missing."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        t = getattr(self, name)
        if t is None:
            raise DatasetNotFoundError(
                f"dataset {self.name!r} has no {name!r} split: {self.missing_reasons[name]}"
            )
        return t

    def to(self, device: torch.device | str) -> "Dataset":
        """Return a copy with all tensors (splits and labels) on ``device``."""
        moved = {s: (None if getattr(self, s) is None else getattr(self, s).to(device)) for s in SPLITS}
        return dataclasses.replace(
            self,
            **moved,
            labels={k: v.to(device) for k, v in self.labels.items()},
            missing_reasons=dict(self.missing_reasons),
        )

    def describe(self) -> str:
        """A human-readable summary, including why any split is missing."""
        lines = [f"dataset {self.name!r}" + (f" from {self.source}" if self.source else "")]
        for s in SPLITS:
            t = getattr(self, s)
            if t is None:
                lines.append(f"  {s}: missing ({self.missing_reasons[s]})")
            else:
                lab = " with labels" if s in self.labels else ""
                lines.append(f"  {s}: {t.shape[0]} x {t.shape[1]}{lab}")
        kind = "binary" if self.binary else ("grey levels, dynamically binarized" if self.dynamic_binarize else "grey levels")
        lines.append(f"  values: {kind}; image_shape: {self.image_shape}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        parts = [f"name={self.name!r}"]
        for s in SPLITS:
            t = getattr(self, s)
            parts.append(f"{s}={None if t is None else tuple(t.shape)}")
        parts += [
            f"image_shape={self.image_shape}",
            f"labels={sorted(self.labels)}",
            f"binary={self.binary}",
            f"dynamic_binarize={self.dynamic_binarize}",
            f"missing={self.missing}",
        ]
        return f"Dataset({', '.join(parts)})"
