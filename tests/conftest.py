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

#: The real data the tests marked ``data`` read (README.md, "Test data", says where they come from).
DATA_FILES = ("binarized_mnist.npz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def pytest_configure(config):
    config.addinivalue_line("markers", "data: reads the real data files in $VARINF_DATA_DIR (README, 'Test data')")


def missing_data_files() -> list[str]:
    path = Path(os.environ["VARINF_DATA_DIR"])
    return [name for name in DATA_FILES if not (path / name).is_file()]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Every test that takes the ``shared_data_dir`` fixture is marked ``data`` (before ``-m`` selects)."""
    for item in items:
        if "shared_data_dir" in getattr(item, "fixturenames", ()):
            item.add_marker("data")


def pytest_collection_finish(session):
    """One clear error, before any test runs, when selected tests need data files that are absent."""
    needing = [item for item in session.items if item.get_closest_marker("data")]
    missing = missing_data_files()
    if needing and missing:
        raise pytest.UsageError(
            f"{len(needing)} selected tests read real data, but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not in VARINF_DATA_DIR={os.environ['VARINF_DATA_DIR']}. "
            "Point VARINF_DATA_DIR at the directory that holds them (README.md, 'Test data', says where they "
            "come from), or run the other tests with: -m 'not data'")


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The directory of the real data files (checked present at collection, see above)."""
    return Path(os.environ["VARINF_DATA_DIR"])


@pytest.fixture
def one_blas_thread():
    """Limit BLAS to one thread (numpy-heavy tests are faster and steadier on 2 shared cores)."""
    with threadpool_limits(limits=1):
        yield
