import os
from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Tests and CI read real data from ../shared/data unless VARINF_DATA_DIR says otherwise.
os.environ.setdefault("VARINF_DATA_DIR", str(SHARED_DATA))
# Absolute, so that tests that change directory (tests/test_readme.py) still find it.
os.environ["VARINF_DATA_DIR"] = str(Path(os.environ["VARINF_DATA_DIR"]).resolve())


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    path = Path(os.environ["VARINF_DATA_DIR"])
    assert (path / "binarized_mnist.npz").exists(), (
        f"binarized_mnist.npz not found in {path}; set VARINF_DATA_DIR to the shared data directory")
    return path


@pytest.fixture
def one_blas_thread():
    """Limit BLAS to one thread (numpy-heavy tests are faster and steadier on 2 shared cores)."""
    with threadpool_limits(limits=1):
        yield
