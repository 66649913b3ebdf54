"""``load_dataset``: one entry point for built-in and user datasets."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError, DatasetNotFoundError
from ._binarized_mnist import load_binarized_mnist
from ._dataset import Dataset
from ._digits import load_digits_dataset
from ._mnist import load_mnist, load_mnist_t10k_split
from ._paths import resolve_data_dir
from ._user import load_array_file

__all__ = ["load_dataset", "DATASETS"]

#: Names of the built-in datasets.
DATASETS: tuple[str, ...] = ("digits", "binarized-mnist", "mnist", "mnist-t10k-split")
_USER_SUFFIXES = (".npy", ".npz")


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    binarize: bool | None = None,
    download: bool = True,
    base_url: str | None = None,
) -> Dataset:
    """Load a dataset by name, or from a ``.npy``/``.npz`` path.

    ``"digits"``: sklearn's 8x8 digits, binarized at 0.5 (``binarize=False``
    keeps grey levels). ``"binarized-mnist"``: static binarization
    (50000/10000/10000 x 784), from ``binarized_mnist.npz`` or the ``.amat``
    files in ``data_dir``, downloading the ``.amat`` files from ``base_url``
    when ``download``. ``"mnist"``: grey levels from the IDX ``.gz`` files;
    ``binarize=True`` sets ``dynamic_binarize``. ``"mnist-t10k-split"``: the t10k
    images alone, split 8000/1000/1000 into train/valid/test (for a directory without
    the training files; not comparable with MNIST results). A path (absolute, relative to
    the working directory, or relative to ``data_dir``) to an ``.npy``/``.npz``
    file loads user data. ``data_dir`` defaults to [`resolve_data_dir`][varinf.data._load.resolve_data_dir].
    """
    key = str(name).strip().lower().replace("_", "-")
    if key in DATASETS:
        if key == "digits":
            return load_digits_dataset(binarize=binarize)
        directory = resolve_data_dir(data_dir)
        if key == "binarized-mnist":
            return load_binarized_mnist(directory, download=download, base_url=base_url)
        if key == "mnist-t10k-split":
            return load_mnist_t10k_split(directory, binarize=binarize)
        return load_mnist(directory, binarize=binarize)

    path = Path(os.fspath(name)).expanduser()
    if path.suffix.lower() in _USER_SUFFIXES:
        candidates = [path]
        if not path.is_absolute():
            candidates.append(resolve_data_dir(data_dir) / path)
        for c in candidates:
            if c.is_file():
                return load_array_file(c, binarize=binarize)
            if c.exists():
                raise DataError(f"data file {c} is not a file (a directory?); give a .npy or .npz file")
        raise DatasetNotFoundError(
            f"data file {name!s} not found (looked in {', '.join(str(c) for c in candidates)})"
        )
    raise DatasetNotFoundError(
        f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}; "
        "a path to a .npy or .npz file of values in [0, 1] also works"
    )
