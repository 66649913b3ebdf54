"""Reading binarized MNIST from .amat text files and from binarized_mnist.npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from varinf.data import load_dataset
from varinf.data import _binarized_mnist as bm
from varinf.data._amat import parse_amat, read_amat
from varinf.errors import DataError, DatasetNotFoundError

DIM = 784
COUNTS = {"train": 5, "valid": 3, "test": 2}


def amat_bytes(x: np.ndarray, *, sep: str = " ", eol: str = "\n") -> bytes:
    return "".join(sep.join(str(int(v)) for v in row) + eol for row in x).encode()


def random_binary(n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, DIM)) > 0.5).astype(np.uint8)


@pytest.fixture
def small_counts(monkeypatch):
    monkeypatch.setattr(bm, "AMAT_LINES", dict(COUNTS))
    monkeypatch.delenv("VARINF_BMNIST_URL", raising=False)
    return COUNTS


def write_amat_dir(d: Path) -> dict[str, np.ndarray]:
    arrays = {s: random_binary(n, i) for i, (s, n) in enumerate(COUNTS.items())}
    for s, a in arrays.items():
        (d / f"binarized_mnist_{s}.amat").write_bytes(amat_bytes(a))
    return arrays


def test_read_amat_canonical_and_loose_layouts(tmp_path):
    x = random_binary(4, 0)
    for i, data in enumerate([amat_bytes(x), amat_bytes(x, eol=" \r\n") + b"\n\n", amat_bytes(x, sep="\t")[:-1]]):
        p = tmp_path / f"f{i}.amat"
        p.write_bytes(data)
        got = read_amat(p, expected_lines=4)
        assert got.dtype == np.uint8 and got.shape == (4, DIM)
        assert np.array_equal(got, x)


def test_load_binarized_mnist_from_amat(tmp_path, small_counts):
    arrays = write_amat_dir(tmp_path)
    d = load_dataset("binarized-mnist", tmp_path, download=False)
    assert d.binary and d.image_shape == (28, 28) and d.labels == {} and d.missing == ()
    for s, a in arrays.items():
        assert d.split(s).dtype == torch.float32
        assert torch.equal(d.split(s), torch.from_numpy(a).float())


def test_amat_too_few_lines(tmp_path):
    p = tmp_path / "binarized_mnist_valid.amat"
    p.write_bytes(amat_bytes(random_binary(9, 1)))
    with pytest.raises(DataError, match=r"binarized_mnist_valid\.amat has 9 lines, expected 10"):
        read_amat(p, expected_lines=10)


def test_amat_wrong_field_count_names_file_and_line(tmp_path):
    x = random_binary(20, 2)
    lines = amat_bytes(x).decode().splitlines(keepends=True)
    lines[16] = lines[16][2:]  # drop the first field of line 17
    p = tmp_path / "short_line.amat"
    p.write_text("".join(lines))
    with pytest.raises(DataError) as e:
        read_amat(p, expected_lines=20)
    assert str(p) in str(e.value)
    assert "line 17: 783 fields, expected 784" in str(e.value)


def test_amat_non_binary_field(tmp_path):
    x = random_binary(5, 3)
    x[2, 4] = 2  # line 3, field 5
    p = tmp_path / "nonbinary.amat"
    p.write_bytes(amat_bytes(x))
    with pytest.raises(DataError) as e:
        read_amat(p, expected_lines=5)
    assert str(p) in str(e.value)
    assert "line 3 field 5: '2' is not 0 or 1" in str(e.value)
    with pytest.raises(DataError, match=r"line 2 field 1: '0\.5' is not 0 or 1"):
        parse_amat(b"0 " * 783 + b"1\n0.5" + b" 1" * 783 + b"\n")


def test_amat_cut_mid_line(tmp_path):
    data = amat_bytes(random_binary(3, 4))
    p = tmp_path / "cut.amat"
    p.write_bytes(data[: len(data) - 101])
    with pytest.raises(DataError, match=r"cut\.amat: line 3: 734 fields, expected 784.*truncated"):
        read_amat(p, expected_lines=3)


def test_amat_on_disk_checked_by_loader(tmp_path, small_counts):
    write_amat_dir(tmp_path)
    p = tmp_path / "binarized_mnist_test.amat"
    p.write_bytes(amat_bytes(random_binary(1, 9)))  # expected 2 lines
    with pytest.raises(DataError, match=r"binarized_mnist_test\.amat has 1 lines, expected 2"):
        load_dataset("binarized-mnist", tmp_path, download=False)


def test_binarized_mnist_partial_without_download(tmp_path, small_counts):
    arrays = write_amat_dir(tmp_path)
    (tmp_path / "binarized_mnist_valid.amat").unlink()
    d = load_dataset("binarized-mnist", tmp_path, download=False)
    assert d.missing == ("valid",) and torch.equal(d.test, torch.from_numpy(arrays["test"]).float())
    with pytest.raises(DatasetNotFoundError, match="binarized_mnist_valid.amat"):
        d.split("valid")


def test_binarized_mnist_nothing_there(tmp_path, small_counts):
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("binarized-mnist", tmp_path, download=False)
    assert str(tmp_path) in str(e.value) and "binarized_mnist_train.amat" in str(e.value)


def test_binarized_mnist_npz(tmp_path):
    arrays = {s: random_binary(n, i) for i, (s, n) in enumerate(COUNTS.items())}
    np.savez_compressed(tmp_path / "binarized_mnist.npz", **arrays)
    d = load_dataset("binarized_mnist", tmp_path)  # underscore spelling also accepted
    assert d.name == "binarized-mnist" and d.binary
    for s, a in arrays.items():
        assert torch.equal(d.split(s), torch.from_numpy(a).float())


@pytest.mark.parametrize(
    "arrays, pattern",
    [
        ({"train": np.zeros((3, DIM), np.uint8), "test": np.zeros((2, DIM), np.uint8)}, r"lacks.*'valid'"),
        ({s: np.zeros((2, 100), np.uint8) for s in COUNTS}, "100 features.*expected 784"),
        ({s: np.full((2, DIM), 3, np.uint8) for s in COUNTS}, r"outside \[0, 1\]"),
        ({s: np.full((2, DIM), 0.5, np.float32) for s in COUNTS}, "non-binary"),
    ],
)
def test_binarized_mnist_npz_invalid(tmp_path, arrays, pattern):
    p = tmp_path / "binarized_mnist.npz"
    np.savez(p, **arrays)
    with pytest.raises(DataError, match=pattern) as e:
        load_dataset("binarized-mnist", tmp_path, download=False)
    assert str(p) in str(e.value)


def test_binarized_mnist_npz_corrupt(tmp_path):
    p = tmp_path / "binarized_mnist.npz"
    arrays = {s: random_binary(n, i) for i, (s, n) in enumerate(COUNTS.items())}
    np.savez_compressed(p, **arrays)
    data = bytearray(p.read_bytes())
    p.write_bytes(bytes(data[: len(data) // 2]))  # truncated archive
    with pytest.raises(DataError, match="binarized_mnist.npz.*corrupt"):
        load_dataset("binarized-mnist", tmp_path, download=False)
    p.write_bytes(b"garbage" * 100)
    with pytest.raises(DataError, match="binarized_mnist.npz"):
        load_dataset("binarized-mnist", tmp_path, download=False)
