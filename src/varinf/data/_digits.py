"""scikit-learn's bundled 8x8 digits (1797 images), no files needed."""

from __future__ import annotations

import numpy as np
import torch

from ._dataset import Dataset

__all__ = ["load_digits_dataset", "DIGITS_SPLIT"]

#: (train, valid, test) sizes; they sum to 1797.
DIGITS_SPLIT = (1197, 300, 300)


def load_digits_dataset(*, binarize: bool | None = None) -> Dataset:
    """Digits scaled to [0, 1] by /16, split by RandomState(0) permutation 1197/300/300, labels kept.

    ``binarize`` None/True: thresholded at 0.5 (binary). False: grey levels.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.data.astype(np.float32) / np.float32(16.0)
    y = bunch.target.astype(np.int64)
    if binarize is None or binarize:
        x = (x > 0.5).astype(np.float32)
    perm = np.random.RandomState(0).permutation(len(x))
    a, b, _ = DIGITS_SPLIT
    idx = {"train": perm[:a], "valid": perm[a : a + b], "test": perm[a + b :]}
    splits = {k: torch.from_numpy(np.ascontiguousarray(x[i])) for k, i in idx.items()}
    labels = {k: torch.from_numpy(np.ascontiguousarray(y[i])) for k, i in idx.items()}
    return Dataset(
        "digits", **splits, image_shape=(8, 8), labels=labels,
        binary=binarize is None or bool(binarize), source="sklearn.datasets.load_digits",
    )
