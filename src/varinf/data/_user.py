"""User datasets from ``.npy`` / ``.npz`` files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ._check import check_data
from ._dataset import SPLITS, Dataset

__all__ = ["load_array_file", "split_indices"]


def split_indices(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed 80/10/10 train/valid/test index split of ``n`` rows (RandomState(seed) permutation)."""
    if n < 3:
        raise DataError(f"cannot split {n} row(s) into train/valid/test; need at least 3")
    k = max(1, n // 10)
    perm = np.random.RandomState(seed).permutation(n)
    return perm[: n - 2 * k], perm[n - 2 * k : n - k], perm[n - k :]


def _flatten(a: np.ndarray, what: str) -> tuple[np.ndarray, tuple[int, int] | None]:
    if a.ndim == 3:
        return a.reshape(a.shape[0], -1), (int(a.shape[1]), int(a.shape[2]))
    if a.ndim == 2:
        s = math.isqrt(a.shape[1])
        return a, ((s, s) if s * s == a.shape[1] and s > 1 else None)
    raise DataError(
        f"{what} has shape {a.shape}; expected (N, D) or (N, H, W) images"
    )


def load_array_file(path: Path, *, binarize: bool | None = None) -> Dataset:
    """Load a user ``.npy``/``.npz`` file of values in [0, 1].

    Arrays are (N, D) or (N, H, W) (flattened to (N, H*W)). An ``.npz`` holds
    ``train`` (plus optional ``valid``/``test``) or a single array of any name;
    a single array is split 80/10/10 by a fixed permutation. ``binarize=True``
    on grey-level data sets ``dynamic_binarize``.
    """
    try:
        obj = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    reasons: dict[str, str] = {}
    if isinstance(obj, np.lib.npyio.NpzFile):
        with obj:
            keys = list(obj.files)
            try:
                if "train" in keys:
                    raw = {s: (obj[s], f"{path}[{s!r}]") for s in SPLITS if s in keys}
                    for s in SPLITS:
                        if s not in keys:
                            reasons[s] = f"{path} has no {s!r} array"
                elif len(keys) == 1:
                    raw = {"all": (obj[keys[0]], f"{path}[{keys[0]!r}]")}
                else:
                    raise DataError(
                        f"{path} holds arrays {keys}; expected 'train' (with optional 'valid', 'test') "
                        "or a single array to split 80/10/10"
                    )
            except DataError:
                raise
            except Exception as exc:
                raise DataError(f"cannot read {path}: {exc}") from exc
    else:
        raw = {"all": (obj, str(path))}

    splits: dict[str, torch.Tensor | None] = {s: None for s in SPLITS}
    image_shape = None
    for key, (a, what) in raw.items():
        if a.dtype.kind not in "biuf":
            raise DataError(f"{what} has non-numeric dtype {a.dtype}; expected numbers in [0, 1]")
        flat, shp = _flatten(a, what)
        if image_shape is not None and shp != image_shape:
            raise DataError(f"{what}: item shape {a.shape[1:]} differs from the other arrays in {path}")
        image_shape = shp
        t = check_data(flat, what=what)
        if key == "all":
            tr, va, te = (torch.from_numpy(i) for i in split_indices(t.shape[0]))
            splits.update(train=t[tr], valid=t[va], test=t[te])
        else:
            splits[key] = t
    if len({t.shape[1] for t in splits.values() if t is not None}) > 1:
        raise DataError(f"{path}: arrays have different numbers of features: "
                        + ", ".join(f"{s} {tuple(t.shape)}" for s, t in splits.items() if t is not None))
    binary = all(bool(((t == 0) | (t == 1)).all()) for t in splits.values() if t is not None)
    return Dataset(
        str(path),
        **splits,
        image_shape=image_shape,
        binary=binary,
        dynamic_binarize=bool(binarize) and not binary,
        missing_reasons=reasons,
        source=str(path),
    )
