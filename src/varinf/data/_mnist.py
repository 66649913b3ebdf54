"""MNIST from the official IDX gzip files, verified by MD5 and SHA-256. Grey levels in [0, 1]."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, DatasetNotFoundError
from ._dataset import Dataset

__all__ = ["load_mnist", "load_mnist_t10k_split", "read_idx", "MNIST_FILES", "MNIST_MD5", "MNIST_SHA256", "MNIST_TRAIN_SIZE",
           "file_digest"]

#: (images, labels) files per source split.
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
#: Published MD5 of each gzip file; tests may override.
MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
#: SHA-256 of each gzip file; tests may override. The t10k values were computed from the shared copies
#: (whose MD5 match the published ones); the train values are those published by torchvision and others.
MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
#: The first MNIST_TRAIN_SIZE training images form "train", the rest "valid".
MNIST_TRAIN_SIZE = 50000

IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049


def file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify_digests(path: Path) -> None:
    for algorithm, label, table in (("md5", "MD5", MNIST_MD5), ("sha256", "SHA-256", MNIST_SHA256)):
        expected = table.get(path.name)
        if expected is None:
            continue
        actual = file_digest(path, algorithm)
        if actual != expected.lower():
            raise DataError(
                f"{path} has {label} {actual}, expected {expected}: the file is corrupt or not the official "
                "MNIST file; delete it and fetch it again"
            )


def read_idx(path: str | Path, *, magic: int | None = None) -> np.ndarray:
    """Read a gzip-compressed IDX file of unsigned bytes into a uint8 array of its stated shape.

    ``magic`` (2051 for images (N, H, W), 2049 for labels (N,)) is checked if given.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is not a readable gzip file ({exc})") from exc
    if len(raw) < 4:
        raise DataError(f"{path}: IDX header truncated ({len(raw)} bytes)")
    got = int.from_bytes(raw[:4], "big")
    if magic is not None and got != magic:
        raise DataError(f"{path}: bad IDX magic number {got}, expected {magic}")
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: bad IDX magic number {got} (expected an unsigned-byte IDX file, 0x0000080N)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header truncated ({len(raw)} bytes, expected {header})")
    dims = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    size = int(np.prod(dims, dtype=np.int64))
    payload = len(raw) - header
    if payload != size:
        what = "truncated" if payload < size else "has trailing data"
        raise DataError(f"{path}: IDX payload {what}: {payload} bytes, expected {size} for shape {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _load_pair(data_dir: Path, images: str, labels: str) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    ip, lp = data_dir / images, data_dir / labels
    _verify_digests(ip)
    _verify_digests(lp)
    x = read_idx(ip, magic=IDX_IMAGES_MAGIC)
    y = read_idx(lp, magic=IDX_LABELS_MAGIC)
    if x.ndim != 3:
        raise DataError(f"{ip}: expected 3 IDX dimensions (N, H, W), got shape {x.shape}")
    if y.ndim != 1:
        raise DataError(f"{lp}: expected 1 IDX dimension (N,), got shape {y.shape}")
    if len(x) != len(y):
        raise DataError(f"{ip} has {len(x)} images but {lp} has {len(y)} labels")
    if len(y) and y.max() > 9:
        raise DataError(f"{lp}: label {int(y.max())} out of range 0..9")
    xt = torch.from_numpy(x.reshape(len(x), -1).astype(np.float32) / np.float32(255.0))
    return xt, torch.from_numpy(y.astype(np.int64)), (int(x.shape[1]), int(x.shape[2]))


def load_mnist(data_dir: Path, *, binarize: bool | None = None) -> Dataset:
    """Load MNIST grey levels from ``data_dir`` (whichever of the train/t10k file pairs exist).

    train = first MNIST_TRAIN_SIZE training images, valid = the rest, test = t10k.
    ``binarize=True`` sets ``dynamic_binarize`` (values stay grey).
    """
    present = {k: [(data_dir / f).exists() for f in files] for k, files in MNIST_FILES.items()}
    if not any(all(p) for p in present.values()):
        absent = [f for k, files in MNIST_FILES.items() for f, ok in zip(files, present[k]) if not ok]
        raise DatasetNotFoundError(
            f"mnist: no complete pair of MNIST files in {data_dir}; missing {', '.join(absent)}. "
            "Place the official IDX .gz files there (they are not downloaded automatically)"
        )
    splits: dict[str, torch.Tensor | None] = {"train": None, "valid": None, "test": None}
    labels: dict[str, torch.Tensor] = {}
    reasons: dict[str, str] = {}
    shape: tuple[int, int] | None = None
    for key, (img, lab) in MNIST_FILES.items():
        targets = ("train", "valid") if key == "train" else ("test",)
        if not all(present[key]):
            absent = [f for f, ok in zip((img, lab), present[key]) if not ok]
            for t in targets:
                reasons[t] = f"needs {img} and {lab} in {data_dir}; missing {', '.join(absent)}"
            continue
        x, y, hw = _load_pair(data_dir, img, lab)
        if shape is not None and hw != shape:
            raise DataError(f"{data_dir / img}: images are {hw[0]}x{hw[1]}, but the other MNIST files hold {shape[0]}x{shape[1]}")
        shape = hw
        if key == "train":
            n = MNIST_TRAIN_SIZE
            if len(x) <= n:
                raise DataError(f"{data_dir / img} has {len(x)} images; expected more than {n} (train + valid)")
            splits["train"], splits["valid"] = x[:n], x[n:]
            labels["train"], labels["valid"] = y[:n], y[n:]
        else:
            splits["test"], labels["test"] = x, y
    return Dataset(
        "mnist",
        **splits,
        image_shape=shape,
        labels=labels,
        binary=False,
        dynamic_binarize=bool(binarize),
        missing_reasons=reasons,
        source=str(data_dir),
    )


def load_mnist_t10k_split(data_dir: Path, *, binarize: bool | None = None) -> Dataset:
    """MNIST's t10k images alone, split 8000/1000/1000 into train/valid/test (dataset "mnist-t10k-split").

    For a data directory that holds only the t10k pair: a fixed permutation (``split_indices``, seed 0)
    of the 10,000 test images gives the three splits, so numbers from it are not comparable with runs
    trained on the 60,000 MNIST training images. Grey levels in [0, 1]; ``binarize=True`` sets
    ``dynamic_binarize``.
    """
    from ._user import split_indices
    img, lab = MNIST_FILES["test"]
    absent = [f for f in (img, lab) if not (data_dir / f).exists()]
    if absent:
        raise DatasetNotFoundError(f"mnist-t10k-split: missing {', '.join(absent)} in {data_dir}. "
                                   "Place the official IDX .gz files there (they are not downloaded automatically)")
    x, y, shape = _load_pair(data_dir, img, lab)
    parts = dict(zip(("train", "valid", "test"), (torch.from_numpy(i) for i in split_indices(len(x)))))
    return Dataset("mnist-t10k-split", **{k: x[i] for k, i in parts.items()}, image_shape=shape,
                   labels={k: y[i] for k, i in parts.items()}, binary=False, dynamic_binarize=bool(binarize),
                   source=str(data_dir / img))
