"""Statically binarized MNIST (Larochelle & Murray, 2011): 50000/10000/10000 x 784, no labels."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, DatasetNotFoundError
from ._amat import read_amat
from ._check import check_data
from ._dataset import SPLITS, Dataset
from ._download import download_file
from ._user import check_declared_size

__all__ = ["load_binarized_mnist", "AMAT_LINES", "AMAT_SHA256", "DEFAULT_BMNIST_URL", "BMNIST_URL_ENV", "NPZ_NAME",
           "amat_name"]

DEFAULT_BMNIST_URL = "https://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
BMNIST_URL_ENV = "VARINF_BMNIST_URL"
NPZ_NAME = "binarized_mnist.npz"
DIM = 784
#: Expected number of lines (images) per ``.amat`` split; tests may override.
AMAT_LINES: dict[str, int] = {"train": 50000, "valid": 10000, "test": 10000}
#: SHA-256 of each published ``.amat`` file, checked on download (from any base URL); tests may override.
#: Established offline: the .amat text is "0 1 0 ... 0\n" per image, so it is rebuilt byte for byte
#: from the arrays of binarized_mnist.npz; the rebuilt files match the SHA-1 that other projects
#: publish for these downloads (train cf70514e..., valid 13418487..., test ca70bd77...), and their
#: SHA-256 are these (tests/test_data_download.py recomputes them from the shared .npz).
AMAT_SHA256: dict[str, str] = {
    "train": "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
    "valid": "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
    "test": "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
}


def amat_name(split: str) -> str:
    return f"binarized_mnist_{split}.amat"


def _read_npz(path: Path) -> dict[str, torch.Tensor]:
    check_declared_size(path)
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"{path} is corrupt or not a valid .npz file ({exc}); delete it and retry") from exc
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataError(f"{path} is not an .npz archive (it holds a single array); expected arrays train/valid/test")
    with z:
        keys = set(z.files)
        missing = [s for s in SPLITS if s not in keys]
        if missing:
            raise DataError(
                f"{path} lacks array(s) {missing}; expected uint8 arrays 'train', 'valid', 'test' "
                f"of shape (N, {DIM}), found {sorted(keys)}"
            )
        try:
            arrays = {s: z[s] for s in SPLITS}
        except Exception as exc:
            raise DataError(f"{path} is corrupt ({type(exc).__name__}: {exc}); delete it and retry") from exc
    return {s: check_data(a, what=f"{path}['{s}']", require_binary=True, dim=DIM) for s, a in arrays.items()}


def _base_url(base_url: str | None) -> str:
    url = base_url or os.environ.get(BMNIST_URL_ENV) or DEFAULT_BMNIST_URL
    return url if url.endswith("/") else url + "/"


def load_binarized_mnist(
    data_dir: Path, *, download: bool = True, base_url: str | None = None
) -> Dataset:
    """Load binarized MNIST from ``data_dir``.

    Uses ``binarized_mnist.npz`` if present, else ``binarized_mnist_{split}.amat``,
    downloading missing ``.amat`` files from ``base_url`` when ``download``.
    Without download, splits whose file is absent are ``None``.
    """
    npz = data_dir / NPZ_NAME
    if npz.exists():
        splits = _read_npz(npz)
        return Dataset("binarized-mnist", **splits, image_shape=(28, 28), binary=True, source=str(npz))

    url = _base_url(base_url)
    splits: dict[str, torch.Tensor | None] = {}
    reasons: dict[str, str] = {}
    for s in SPLITS:
        path = data_dir / amat_name(s)
        expected = AMAT_LINES.get(s)
        if path.exists():
            arr = read_amat(path, expected_lines=expected, dim=DIM)
        elif download:
            arr = download_file(
                url + path.name,
                path,
                validate=lambda tmp, p=path, e=expected: read_amat(
                    tmp, expected_lines=e, dim=DIM, name=f"{p} (downloaded from {url + p.name})"
                ),
                sha256=AMAT_SHA256.get(s),
            )
        else:
            splits[s] = None
            reasons[s] = f"needs {path.name} (or {NPZ_NAME}) in {data_dir}; not found and download=False"
            continue
        splits[s] = torch.from_numpy(arr).to(torch.float32)
    if all(v is None for v in splits.values()):
        raise DatasetNotFoundError(
            f"binarized-mnist: none of {NPZ_NAME}, {', '.join(amat_name(s) for s in SPLITS)} is in "
            f"{data_dir}; pass download=True to fetch them from {url}, or place the files there"
        )
    return Dataset(
        "binarized-mnist", **splits, image_shape=(28, 28), binary=True, missing_reasons=reasons, source=str(data_dir)
    )
