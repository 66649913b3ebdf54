"""Datasets, validation of user data, and minibatching.

Datasets are float32 matrices (N, D) with values in [0, 1]; see
[`load_dataset`][varinf.data.load_dataset] and [`Dataset`][varinf.data.Dataset].
"""

from ._batching import iterate_batches, num_batches
from ._check import check_data
from ._dataset import SPLITS, Dataset
from ._load import DATASETS, load_dataset
from ._paths import resolve_data_dir

__all__ = [
    "DATASETS",
    "SPLITS",
    "Dataset",
    "check_data",
    "iterate_batches",
    "load_dataset",
    "num_batches",
    "resolve_data_dir",
]
