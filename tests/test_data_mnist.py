"""MNIST from IDX gzip files: parsing, MD5 verification, partial availability."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from varinf.data import load_dataset
from varinf.data import _mnist
from varinf.data._mnist import read_idx
from varinf.errors import DataError, DatasetNotFoundError

TRAIN_IMG, TRAIN_LAB = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
TEST_IMG, TEST_LAB = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"


def idx_bytes(a: np.ndarray, magic: int | None = None) -> bytes:
    a = np.asarray(a, dtype=np.uint8)
    magic = magic if magic is not None else 0x0800 | a.ndim
    return struct.pack(">I", magic) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def write_gz(path: Path, payload: bytes) -> str:
    path.write_bytes(gzip.compress(payload))
    return hashlib.md5(path.read_bytes()).hexdigest()


def make_mnist(d: Path, monkeypatch, *, n_train: int = 12, n_test: int = 5, train: bool = True):
    """Tiny 4x4 MNIST-like files; the MD5 table is patched to match them (and no SHA-256 is pinned)."""
    rng = np.random.default_rng(0)
    md5 = {}
    out = {}
    pairs = [("test", TEST_IMG, TEST_LAB, n_test)] + ([("train", TRAIN_IMG, TRAIN_LAB, n_train)] if train else [])
    for key, img, lab, n in pairs:
        x = rng.integers(0, 256, (n, 4, 4), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        md5[img] = write_gz(d / img, idx_bytes(x))
        md5[lab] = write_gz(d / lab, idx_bytes(y))
        out[key] = (x, y)
    monkeypatch.setattr(_mnist, "MNIST_MD5", md5)
    monkeypatch.setattr(_mnist, "MNIST_SHA256", {})
    monkeypatch.setattr(_mnist, "MNIST_TRAIN_SIZE", n_train - 3)
    return out


def test_read_idx_roundtrip(tmp_path):
    x = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    p = tmp_path / "imgs.gz"
    write_gz(p, idx_bytes(x))
    assert np.array_equal(read_idx(p, magic=2051), x)


def test_load_mnist_all_splits(tmp_path, monkeypatch):
    raw = make_mnist(tmp_path, monkeypatch)
    d = load_dataset("mnist", tmp_path)
    assert d.missing == () and d.image_shape == (4, 4) and not d.binary and not d.dynamic_binarize
    assert (d.train.shape, d.valid.shape, d.test.shape) == ((9, 16), (3, 16), (5, 16))
    x, y = raw["train"]
    assert torch.allclose(d.train, torch.from_numpy(x[:9].reshape(9, 16) / 255.0).float())
    assert torch.allclose(d.valid, torch.from_numpy(x[9:].reshape(3, 16) / 255.0).float())
    assert torch.equal(d.labels["valid"], torch.from_numpy(y[9:]).long())
    assert d.labels["test"].dtype == torch.int64
    assert load_dataset("mnist", tmp_path, binarize=True).dynamic_binarize
    assert not load_dataset("mnist", tmp_path, binarize=False).dynamic_binarize


def test_mnist_only_test_files(tmp_path, monkeypatch):
    make_mnist(tmp_path, monkeypatch, train=False)
    d = load_dataset("mnist", tmp_path)
    assert d.missing == ("train", "valid") and d.test.shape == (5, 16)
    with pytest.raises(DatasetNotFoundError, match=TRAIN_IMG):
        d.split("train")
    assert TRAIN_LAB in d.describe() and str(tmp_path) in d.describe()


def test_mnist_no_files(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("mnist", tmp_path)
    for f in (TRAIN_IMG, TRAIN_LAB, TEST_IMG, TEST_LAB):
        assert f in str(e.value)


def test_md5_mismatch(tmp_path, monkeypatch):
    make_mnist(tmp_path, monkeypatch, train=False)
    actual = _mnist.MNIST_MD5[TEST_IMG]
    monkeypatch.setitem(_mnist.MNIST_MD5, TEST_IMG, "0" * 32)
    with pytest.raises(DataError) as e:
        load_dataset("mnist", tmp_path)
    msg = str(e.value)
    assert TEST_IMG in msg and "0" * 32 in msg and actual in msg


def test_default_md5_table_is_the_published_one():
    assert _mnist.MNIST_MD5 == {
        TRAIN_IMG: "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        TRAIN_LAB: "d53e105ee54ea40749a09fcbcd1e9432",
        TEST_IMG: "9fb629c4189551a2d022fa330f9573f3",
        TEST_LAB: "ec29112dd5afa0611ce80d1b7f02629c",
    }


def test_sha256_table_matches_the_shared_test_files(shared_data_dir, monkeypatch):
    for name in (TEST_IMG, TEST_LAB):
        assert _mnist.file_digest(shared_data_dir / name, "sha256") == _mnist.MNIST_SHA256[name]
    assert load_dataset("mnist", shared_data_dir).test.shape == (10000, 784)        # both digests pass
    monkeypatch.setitem(_mnist.MNIST_SHA256, TEST_LAB, "0" * 64)
    with pytest.raises(DataError, match=f"{TEST_LAB} has SHA-256 f7ae60f9.*, expected {'0' * 64}"):
        load_dataset("mnist", shared_data_dir)


def test_bad_magic(tmp_path, monkeypatch):
    make_mnist(tmp_path, monkeypatch, train=False)
    # a labels file where images are expected
    md5 = write_gz(tmp_path / TEST_IMG, idx_bytes(np.zeros(5, np.uint8)))
    monkeypatch.setitem(_mnist.MNIST_MD5, TEST_IMG, md5)
    with pytest.raises(DataError, match=f"{TEST_IMG}: bad IDX magic number 2049, expected 2051"):
        load_dataset("mnist", tmp_path)


def test_truncated_payload(tmp_path, monkeypatch):
    make_mnist(tmp_path, monkeypatch, train=False)
    payload = idx_bytes(np.zeros((5, 4, 4), np.uint8))[:-7]
    monkeypatch.setitem(_mnist.MNIST_MD5, TEST_IMG, write_gz(tmp_path / TEST_IMG, payload))
    with pytest.raises(DataError, match=rf"{TEST_IMG}: IDX payload truncated: 73 bytes, expected 80"):
        load_dataset("mnist", tmp_path)


def test_not_gzip_and_count_mismatch(tmp_path, monkeypatch):
    make_mnist(tmp_path, monkeypatch, train=False)
    (tmp_path / TEST_LAB).write_bytes(b"not gzip at all")
    monkeypatch.setitem(_mnist.MNIST_MD5, TEST_LAB, hashlib.md5(b"not gzip at all").hexdigest())
    with pytest.raises(DataError, match=f"{TEST_LAB} is not a readable gzip file"):
        load_dataset("mnist", tmp_path)
    monkeypatch.setitem(_mnist.MNIST_MD5, TEST_LAB, write_gz(tmp_path / TEST_LAB, idx_bytes(np.zeros(4, np.uint8))))
    with pytest.raises(DataError, match="5 images but .* 4 labels"):
        load_dataset("mnist", tmp_path)
