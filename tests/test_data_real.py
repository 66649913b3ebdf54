"""The real datasets in the shared data directory. They take the ``shared_data_dir`` fixture, so without
the files the run stops with one error naming them (tests/conftest.py) instead of skipping."""

from __future__ import annotations

import pytest
import torch

from varinf.data import load_dataset
from varinf.errors import DatasetNotFoundError


def test_real_binarized_mnist(shared_data_dir):
    d = load_dataset("binarized-mnist", shared_data_dir, download=False)
    assert (d.train.shape, d.valid.shape, d.test.shape) == ((50000, 784), (10000, 784), (10000, 784))
    assert d.binary and d.image_shape == (28, 28) and d.missing == ()
    for s in ("train", "valid", "test"):
        x = d.split(s)
        assert x.dtype == torch.float32
        assert bool(((x == 0) | (x == 1)).all())
    mean = d.train.mean().item()
    assert 0.1 < mean < 0.2  # about 13% of binarized MNIST pixels are on


def test_real_mnist_test_split_only(shared_data_dir):
    d = load_dataset("mnist", shared_data_dir)
    assert d.test.shape == (10000, 784) and d.test.dtype == torch.float32
    assert d.test.min() >= 0 and d.test.max() <= 1 and d.test.max() == 1
    assert not d.binary and d.image_shape == (28, 28)
    y = d.labels["test"]
    assert y.dtype == torch.int64 and y.shape == (10000,)
    assert sorted(torch.unique(y).tolist()) == list(range(10))
    assert d.missing == ("train", "valid")
    with pytest.raises(DatasetNotFoundError, match="train-images-idx3-ubyte.gz"):
        d.split("train")
