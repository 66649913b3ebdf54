"""Datasets (digits, user files), Dataset methods, check_data and batching."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from varinf.data import (
    DATASETS,
    Dataset,
    check_data,
    iterate_batches,
    load_dataset,
    num_batches,
    resolve_data_dir,
)
from varinf.errors import DataError, DatasetNotFoundError


# --------------------------------------------------------------------------- paths

def test_resolve_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("VARINF_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_dir() == tmp_path / "home" / ".cache" / "varinf"
    monkeypatch.setenv("VARINF_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"


# --------------------------------------------------------------------------- digits

def test_digits_shapes_splits_labels():
    d = load_dataset("digits")
    assert d.name == "digits"
    assert [d.train.shape, d.valid.shape, d.test.shape] == [(1197, 64), (300, 64), (300, 64)]
    assert d.dim == 64 and d.image_shape == (8, 8)
    assert d.binary and not d.dynamic_binarize and d.missing == ()
    for s in ("train", "valid", "test"):
        x = d.split(s)
        assert x.dtype == torch.float32
        assert set(torch.unique(x).tolist()) == {0.0, 1.0}
        y = d.labels[s]
        assert y.dtype == torch.int64 and y.shape == (x.shape[0],)
    assert set(torch.cat(list(d.labels.values())).tolist()) == set(range(10))
    # the fixed permutation: the three splits together are the whole set, no overlap
    from sklearn.datasets import load_digits

    raw = load_digits()
    perm = np.random.RandomState(0).permutation(1797)
    expected = torch.from_numpy((raw.data[perm[:1197]] / 16 > 0.5).astype(np.float32))
    assert torch.equal(d.train, expected)
    assert torch.equal(d.labels["test"], torch.from_numpy(raw.target[perm[1497:]]).long())


def test_digits_deterministic_and_grey_option():
    a, b = load_dataset("digits"), load_dataset("digits")
    for s in ("train", "valid", "test"):
        assert torch.equal(a.split(s), b.split(s))
        assert torch.equal(a.labels[s], b.labels[s])
    g = load_dataset("digits", binarize=False)
    assert not g.binary
    assert torch.equal((g.train > 0.5).float(), a.train)
    assert g.train.max() == 1.0 and ((g.train > 0) & (g.train < 1)).any()


def test_unknown_name_lists_known_names():
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("cifar-17")
    msg = str(e.value)
    for name in DATASETS:
        assert name in msg
    assert ".npy" in msg and ".npz" in msg
    assert set(DATASETS) == {"digits", "binarized-mnist", "mnist", "mnist-t10k-split"}


def test_missing_user_file(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="nothere.npz"):
        load_dataset(str(tmp_path / "nothere.npz"))


# --------------------------------------------------------------------------- Dataset

def _tiny_dataset() -> Dataset:
    x = torch.rand(6, 4)
    return Dataset("tiny", train=x, valid=None, test=x[:2], image_shape=(2, 2),
                   labels={"train": torch.arange(6)},
                   missing_reasons={"valid": "needs tiny_valid.bin in /somewhere"})


def test_dataset_split_missing_and_describe():
    d = _tiny_dataset()
    assert d.missing == ("valid",)
    assert d.dim == 4
    assert torch.equal(d.split("test"), d.test)
    with pytest.raises(DatasetNotFoundError, match="valid.*tiny_valid.bin"):
        d.split("valid")
    with pytest.raises(DataError, match="unknown split"):
        d.split("training")
    text = d.describe()
    assert "valid: missing" in text and "tiny_valid.bin" in text and "6 x 4" in text
    assert "tensor(" not in repr(d) and "(6, 4)" in repr(d)


def test_dataset_to_returns_copy():
    d = _tiny_dataset()
    e = d.to("cpu")
    assert e is not d and e.missing == d.missing and e.image_shape == (2, 2)
    assert torch.equal(e.train, d.train) and torch.equal(e.labels["train"], d.labels["train"])
    e.labels["valid"] = torch.zeros(1)  # the copy's dicts are its own
    assert "valid" not in d.labels
    if torch.cuda.is_available():  # pragma: no cover - depends on the machine
        assert d.to("cuda").train.is_cuda


def test_dataset_rejects_inconsistent_splits():
    with pytest.raises(DataError, match="different feature dimensions"):
        Dataset("bad", train=torch.rand(3, 4), test=torch.rand(3, 5))
    with pytest.raises(DataError, match="labels"):
        Dataset("bad", train=torch.rand(3, 4), labels={"train": torch.arange(2)})


# --------------------------------------------------------------------------- user files

def test_user_npy_2d_single_array_split(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.random((50, 16))
    p = tmp_path / "grey.npy"
    np.save(p, x)
    d = load_dataset(str(p))
    assert (d.train.shape, d.valid.shape, d.test.shape) == ((40, 16), (5, 16), (5, 16))
    assert d.image_shape == (4, 4) and not d.binary and not d.dynamic_binarize and d.labels == {}
    perm = np.random.RandomState(0).permutation(50)
    assert torch.equal(d.train, torch.from_numpy(x[perm[:40]]).float())
    assert torch.equal(d.test, torch.from_numpy(x[perm[45:]]).float())
    # deterministic, and binarize=True on grey data means dynamic binarization
    d2 = load_dataset(p, binarize=True)
    assert torch.equal(d2.train, d.train) and d2.dynamic_binarize and not d2.binary


def test_user_npy_3d_binary_bool_and_non_square(tmp_path):
    x = np.random.default_rng(2).random((20, 3, 5)) > 0.5
    p = tmp_path / "imgs.npy"
    np.save(p, x)
    d = load_dataset(p)
    assert d.dim == 15 and d.image_shape == (3, 5) and d.binary
    assert d.train.dtype == torch.float32
    p2 = tmp_path / "flat.npy"
    np.save(p2, x.reshape(20, 15).astype(np.int64))
    d2 = load_dataset(p2)
    assert d2.image_shape is None and d2.binary


def test_user_npz_split_keys(tmp_path):
    rng = np.random.default_rng(3)
    p = tmp_path / "splits.npz"
    np.savez(p, train=(rng.random((30, 2, 2)) > 0.5).astype(np.uint8), test=np.ones((7, 2, 2), np.uint8))
    d = load_dataset(p)
    assert d.train.shape == (30, 4) and d.test.shape == (7, 4) and d.valid is None
    assert d.missing == ("valid",) and d.binary and d.image_shape == (2, 2)
    with pytest.raises(DatasetNotFoundError, match="valid"):
        d.split("valid")


def test_user_npz_single_array_any_key_and_relative_to_data_dir(tmp_path):
    p = tmp_path / "one.npz"
    np.savez(p, pixels=np.full((10, 9), 0.25, np.float32))
    d = load_dataset("one.npz", data_dir=tmp_path)
    assert (len(d.train), len(d.valid), len(d.test)) == (8, 1, 1) and d.image_shape == (3, 3)


@pytest.mark.parametrize(
    "array, pattern",
    [
        (np.full((10, 4), 2.0), r"outside \[0, 1\].*max 2"),
        (np.arange(40).reshape(10, 4), r"outside \[0, 1\].*max 39"),
        (np.where(np.eye(10, 4) > 0, np.nan, 0.5), "4 NaN and 0 infinite"),
        (np.random.default_rng(0).random((10, 2, 2, 2)), r"shape \(10, 2, 2, 2\)"),
        (np.array(["a", "b", "c"] * 4).reshape(12, 1), "non-numeric"),
    ],
)
def test_user_file_bad_values(tmp_path, array, pattern):
    p = tmp_path / "bad.npy"
    np.save(p, array)
    with pytest.raises(DataError, match=pattern) as e:
        load_dataset(p)
    assert "bad.npy" in str(e.value)


def test_user_npz_ambiguous_keys_and_mismatched_dims(tmp_path):
    p = tmp_path / "two.npz"
    np.savez(p, a=np.zeros((5, 4)), b=np.zeros((5, 4)))
    with pytest.raises(DataError, match=r"two\.npz.*'a'.*'b'"):
        load_dataset(p)
    q = tmp_path / "mismatch.npz"
    np.savez(q, train=np.zeros((5, 4)), valid=np.zeros((5, 9)))
    with pytest.raises(DataError, match="mismatch.npz"):
        load_dataset(q)


def test_user_file_corrupt(tmp_path):
    p = tmp_path / "junk.npz"
    p.write_bytes(b"PK\x03\x04 this is not really a zip file")
    with pytest.raises(DataError, match="junk.npz"):
        load_dataset(p)


# --------------------------------------------------------------------------- check_data

def test_check_data_accepts_numpy_and_torch():
    x = np.random.default_rng(0).random((5, 3))
    t = check_data(x)
    assert t.dtype == torch.float32 and t.shape == (5, 3)
    assert torch.allclose(t, torch.from_numpy(x).float())
    b = check_data(torch.tensor([[True, False], [False, True]]), require_binary=True, dim=2)
    assert b.dtype == torch.float32 and b.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    u = check_data(np.array([[0, 1]], dtype=np.uint8), require_binary=True)
    assert u.tolist() == [[0.0, 1.0]]
    f = torch.rand(4, 2, dtype=torch.float64)
    assert torch.equal(check_data(f), f.float())


def test_check_data_not_2d():
    with pytest.raises(DataError, match=r"shape \(4, 2, 3\).*2-D.*reshape\(4, -1\)"):
        check_data(np.zeros((4, 2, 3)), what="batch")
    with pytest.raises(DataError, match=r"batch has shape \(4,\)"):
        check_data(torch.zeros(4), what="batch")


def test_check_data_non_numeric():
    with pytest.raises(DataError, match="non-numeric dtype"):
        check_data(np.array([["0", "1"]]))
    with pytest.raises(DataError, match="non-numeric dtype"):
        check_data(np.array([[object(), None]], dtype=object))
    with pytest.raises(DataError, match="complex"):
        check_data(torch.zeros(2, 2, dtype=torch.complex64))


def test_check_data_nan_and_inf():
    x = np.full((4, 3), 0.5)
    x[2, 1] = np.nan
    x[3, 0] = np.inf
    x[3, 2] = np.nan
    with pytest.raises(DataError, match=r"2 NaN and 1 infinite.*row 2, column 1"):
        check_data(x)
    t = torch.full((2, 2), 0.5)
    t[1, 1] = -float("inf")
    with pytest.raises(DataError, match=r"0 NaN and 1 infinite.*row 1, column 1"):
        check_data(t)


def test_check_data_out_of_range():
    x = np.zeros((3, 3))
    x[1, 2] = 255
    with pytest.raises(DataError, match=r"1 value\(s\) outside \[0, 1\].*max 255.*row 1, column 2.*x / 255"):
        check_data(x)
    with pytest.raises(DataError, match=r"min -0.5"):
        check_data(torch.tensor([[-0.5, 0.2]]))


def test_check_data_require_binary():
    x = np.array([[0.0, 1.0, 0.3], [0.7, 1.0, 0.0]])
    assert check_data(x).shape == (2, 3)  # fine without require_binary
    with pytest.raises(DataError, match=r"2 non-binary value\(s\).*row 0, column 2.*x > 0.5"):
        check_data(x, require_binary=True)


def test_check_data_wrong_dim_and_empty():
    with pytest.raises(DataError, match="5 features.*expected 784"):
        check_data(np.zeros((2, 5)), dim=784)
    with pytest.raises(DataError, match="empty"):
        check_data(np.zeros((0, 5)))


# --------------------------------------------------------------------------- batching

def test_num_batches():
    assert num_batches(10, 3) == 4
    assert num_batches(10, 3, drop_last=True) == 3
    assert num_batches(9, 3) == num_batches(9, 3, True) == 3
    assert num_batches(0, 3) == 0
    with pytest.raises(DataError):
        num_batches(10, 0)


def test_iterate_batches_covers_every_index_once():
    n = 103
    x = torch.arange(n, dtype=torch.float32).unsqueeze(1).repeat(1, 3)
    g = torch.Generator().manual_seed(0)
    batches = list(iterate_batches(x, 10, generator=g))
    assert len(batches) == num_batches(n, 10) == 11
    assert [len(b) for b in batches] == [10] * 10 + [3]
    seen = torch.cat(batches)[:, 0].long()
    assert sorted(seen.tolist()) == list(range(n))
    assert not torch.equal(seen, torch.arange(n))  # actually shuffled
    # drop_last
    batches = list(iterate_batches(x, 10, generator=g, drop_last=True))
    assert [len(b) for b in batches] == [10] * 10
    assert len(set(torch.cat(batches)[:, 0].long().tolist())) == 100
    # no shuffle: in order
    ordered = torch.cat(list(iterate_batches(x, 7, shuffle=False)))
    assert torch.equal(ordered, x)


def test_iterate_batches_deterministic_given_generator():
    x = torch.rand(57, 4)
    a = list(iterate_batches(x, 8, generator=torch.Generator().manual_seed(123)))
    b = list(iterate_batches(x, 8, generator=torch.Generator().manual_seed(123)))
    c = list(iterate_batches(x, 8, generator=torch.Generator().manual_seed(124)))
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not all(torch.equal(p, q) for p, q in zip(a, c))
    # resuming from a saved generator state reproduces the next epoch
    g = torch.Generator().manual_seed(5)
    list(iterate_batches(x, 8, generator=g, dynamic_binarize=True))
    state = g.get_state()
    epoch2 = list(iterate_batches(x, 8, generator=g, dynamic_binarize=True))
    g2 = torch.Generator()
    g2.set_state(state)
    again = list(iterate_batches(x, 8, generator=g2, dynamic_binarize=True))
    assert all(torch.equal(p, q) for p, q in zip(epoch2, again))


def test_dynamic_binarization_statistics():
    n, d = 4000, 5
    levels = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0])
    x = levels.repeat(n, 1)
    g = torch.Generator().manual_seed(0)
    out = torch.cat(list(iterate_batches(x, 512, generator=g, dynamic_binarize=True)))
    assert out.shape == x.shape and out.dtype == torch.float32
    assert set(torch.unique(out).tolist()) <= {0.0, 1.0}
    mean = out.mean(0)
    # binomial standard error at p=0.5 with n=4000 is ~0.008; 5 sigma tolerance
    assert torch.allclose(mean, levels, atol=0.04)
    assert mean[0] == 0 and mean[-1] == 1
    # redrawn on each pass
    again = torch.cat(list(iterate_batches(x, 512, generator=g, dynamic_binarize=True, shuffle=False)))
    assert not torch.equal(again, out)


def test_iterate_batches_rejects_bad_input():
    with pytest.raises(DataError):
        iterate_batches(np.zeros((3, 2)), 2)
    with pytest.raises(DataError):
        iterate_batches(torch.zeros(3, 2), 0)
    with pytest.raises(DataError, match="dynamic_binarize"):
        iterate_batches(torch.zeros(3, 2, dtype=torch.uint8), 2, dynamic_binarize=True)
