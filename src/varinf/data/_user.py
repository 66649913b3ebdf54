"""User datasets from ``.npy`` / ``.npz`` files."""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..runfiles import open_regular, shown
from ._check import check_data
from ._dataset import SPLITS, Dataset

__all__ = ["load_array_file", "split_indices", "check_declared_size", "max_data_bytes", "MAX_DATA_BYTES_ENV",
           "DEFAULT_MAX_DATA_BYTES"]

#: The environment variable that raises (or lowers) the limit on the bytes a data file's arrays may declare.
MAX_DATA_BYTES_ENV = "VARINF_MAX_DATA_BYTES"
#: Default limit: 2 GiB of arrays (binarized MNIST is 55 MB; MNIST as float32 220 MB).
DEFAULT_MAX_DATA_BYTES = 2 << 30


#: Fewest rows of a single array that ``split_indices`` splits: 10 gives 8/1/1, the smallest true 80/10/10.
MIN_SPLIT_ROWS = 10

# The first bytes of the two formats np.load reads here (with allow_pickle=False).
_MAGIC = {".npy": (b"\x93NUMPY",), ".npz": (b"PK\x03\x04", b"PK\x05\x06")}   # a zip; an empty one
_PICKLE_PROTOCOL_2_PLUS = b"\x80"


def split_indices(n: int, seed: int = 0, what: str = "data") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed 80/10/10 train/valid/test index split of ``n`` rows (RandomState(seed) permutation).

    Fewer than `MIN_SPLIT_ROWS` rows is an error rather than a warning: the split would
    leave one or two rows to train on and one to validate (early stopping, the best checkpoint)
    and test on, numbers that mean nothing; a user with so little data can pass the splits
    explicitly (an ``.npz`` with ``train`` and ``valid`` arrays) and loses nothing.
    """
    if n < MIN_SPLIT_ROWS:
        raise DataError(f"{what} has {n} row(s); splitting a single array 80/10/10 into train/valid/test needs "
                        f"at least {MIN_SPLIT_ROWS} rows (or give an .npz with 'train' and 'valid' arrays)")
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


def max_data_bytes() -> int:
    """The most bytes a data file's arrays may declare: ``$VARINF_MAX_DATA_BYTES``, else 2 GiB."""
    text = os.environ.get(MAX_DATA_BYTES_ENV)
    if text is None:
        return DEFAULT_MAX_DATA_BYTES
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise DataError(f"{MAX_DATA_BYTES_ENV}={shown(text, 40)} must be a whole number of bytes >= 1")
    return value


def _npy_nbytes(f, what: str) -> int:
    """The bytes of the array an ``.npy`` stream declares in its header (read without reading the data)."""
    try:
        version = np.lib.format.read_magic(f)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, _, dtype = read_header(f)
    except (ValueError, OSError, SyntaxError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{what} is corrupt or not a readable .npy array ({shown(str(exc), 80)}); save arrays with "
                        "numpy.save / numpy.savez") from None
    return math.prod(shape) * dtype.itemsize


def check_declared_size(path: Path) -> int:
    """Check, before anything is loaded, what ``path`` (.npy or .npz) declares: each array's size from its
    header, against the bytes the file (or the archive member) holds, and their total against
    :func:`max_data_bytes`. Only a regular file is opened (a FIFO or device is refused at once).
    Returns the total. One-line DataError otherwise (a truncated file, a zip bomb, a header asking for TBs).
    """
    limit, total = max_data_bytes(), 0
    with os.fdopen(open_regular(path, error=DataError), "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if path.suffix.lower() == ".npz":
            try:
                with zipfile.ZipFile(f) as archive:
                    for info in archive.infolist():
                        with archive.open(info) as member:
                            declared = _npy_nbytes(member, f"{path}[{shown(info.filename, 60)}]")
                        if declared > info.file_size:
                            raise DataError(f"{path}[{shown(info.filename, 60)}] declares an array of {declared} "
                                            f"bytes in a member of {info.file_size}; the file is damaged")
                        total += declared
                        if total > limit:
                            break
            except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError, EOFError) as exc:
                raise DataError(f"{path} is corrupt or not a readable .npz archive ({shown(str(exc), 80)}); save arrays with "
                                "numpy.savez") from None
        else:
            total = _npy_nbytes(f, str(path))
            if total > size - f.tell():
                raise DataError(f"{path} declares an array of {total} bytes but holds {size - f.tell()}; "
                                "the file is truncated or damaged")
    if total > limit:
        raise DataError(f"{path} declares arrays of more than {limit} bytes ({total / 2**30:.1f} GiB or more) "
                        f"once loaded; set {MAX_DATA_BYTES_ENV} to a larger number of bytes if the machine has the "
                        "memory for it")
    return total


def _check_magic(path: Path) -> None:
    """A one-line DataError unless ``path`` starts like the format its suffix names (before np.load guesses)."""
    suffix = path.suffix.lower()
    if suffix not in _MAGIC:
        return
    try:
        with os.fdopen(open_regular(path, error=DataError), "rb") as f:
            head = f.read(6)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if head.startswith(_MAGIC[suffix]):
        return
    kind = ("a Python pickle, which varinf never loads (it can run code)" if head[:1] == _PICKLE_PROTOCOL_2_PLUS
            else f"not a {suffix} file (it starts with bytes {head!r})")
    raise DataError(f"{path} is {kind}; save arrays with numpy.save / numpy.savez")


def load_array_file(path: Path, *, binarize: bool | None = None) -> Dataset:
    """Load a user ``.npy``/``.npz`` file of values in [0, 1].

    Arrays are (N, D) or (N, H, W) (flattened to (N, H*W)). An ``.npz`` holds
    ``train`` (plus optional ``valid``/``test``) or a single array of any name;
    a single array is split 80/10/10 by a fixed permutation. ``binarize=True``
    on grey-level data sets ``dynamic_binarize``.
    """
    _check_magic(path)
    check_declared_size(path)
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
            tr, va, te = (torch.from_numpy(i) for i in split_indices(t.shape[0], what=what))
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
