"""Downloading the binarized MNIST .amat files from a local HTTP server."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from varinf.data import load_dataset
from varinf.data import _binarized_mnist as bm
from varinf.data._download import download_file
from varinf.errors import DataError, DatasetNotFoundError

DIM = 784
COUNTS = {"train": 6, "valid": 3, "test": 2}


def amat_bytes(x: np.ndarray) -> bytes:
    return "".join(" ".join(str(int(v)) for v in row) + "\n" for row in x).encode()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


class _LyingHandler(_QuietHandler):
    """Announces more bytes than it sends, then closes the connection."""

    def do_GET(self):
        body = b"0 1\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) + 1000))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True


def _serve(directory: Path, handler=_QuietHandler):
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(directory))
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    return server, thread, f"http://127.0.0.1:{server.server_address[1]}/"


@pytest.fixture
def server(tmp_path):
    """(served directory, base URL) of a local HTTP server."""
    root = tmp_path / "served"
    root.mkdir()
    srv, thread, url = _serve(root)
    yield root, url
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.fixture
def small_counts(monkeypatch):
    monkeypatch.setattr(bm, "AMAT_LINES", dict(COUNTS))
    monkeypatch.delenv("VARINF_BMNIST_URL", raising=False)


def fill(root: Path) -> dict[str, np.ndarray]:
    arrays = {
        s: (np.random.default_rng(i).random((n, DIM)) > 0.5).astype(np.uint8)
        for i, (s, n) in enumerate(COUNTS.items())
    }
    for s, a in arrays.items():
        (root / f"binarized_mnist_{s}.amat").write_bytes(amat_bytes(a))
    return arrays


def test_download_lands_atomically(tmp_path, server, small_counts):
    root, url = server
    arrays = fill(root)
    data_dir = tmp_path / "data" / "nested"  # created on demand
    d = load_dataset("binarized-mnist", data_dir, base_url=url)
    for s, a in arrays.items():
        assert torch.equal(d.split(s), torch.from_numpy(a).float())
    names = sorted(p.name for p in data_dir.iterdir())
    assert names == sorted(f"binarized_mnist_{s}.amat" for s in COUNTS)  # no temp leftovers
    for s in COUNTS:
        assert (data_dir / f"binarized_mnist_{s}.amat").read_bytes() == (root / f"binarized_mnist_{s}.amat").read_bytes()
    # second load reads from disk: works with the server gone
    for p in root.iterdir():
        p.unlink()
    d2 = load_dataset("binarized-mnist", data_dir, base_url=url)
    assert torch.equal(d2.train, d.train)


def test_env_url_override(tmp_path, server, small_counts, monkeypatch):
    root, url = server
    fill(root)
    monkeypatch.setenv("VARINF_BMNIST_URL", url.rstrip("/"))  # trailing slash optional
    d = load_dataset("binarized-mnist", tmp_path / "data")
    assert d.train.shape == (6, DIM)


def test_truncated_download_leaves_nothing(tmp_path, server, small_counts):
    root, url = server
    arrays = fill(root)
    # the served valid file is one line short
    (root / "binarized_mnist_valid.amat").write_bytes(amat_bytes(arrays["valid"][:2]))
    data_dir = tmp_path / "data"
    with pytest.raises(DataError) as e:
        load_dataset("binarized-mnist", data_dir, base_url=url)
    msg = str(e.value)
    assert "binarized_mnist_valid.amat" in msg and "has 2 lines, expected 3" in msg
    assert not (data_dir / "binarized_mnist_valid.amat").exists()
    assert sorted(p.name for p in data_dir.iterdir()) == ["binarized_mnist_train.amat"]


def test_download_cut_mid_line_names_line(tmp_path, server, small_counts):
    root, url = server
    arrays = fill(root)
    data = amat_bytes(arrays["train"])
    (root / "binarized_mnist_train.amat").write_bytes(data[:-300])
    with pytest.raises(DataError, match=r"binarized_mnist_train\.amat.*line 6: 634 fields, expected 784"):
        load_dataset("binarized-mnist", tmp_path / "data", base_url=url)
    assert list((tmp_path / "data").iterdir()) == []


def test_404_names_url_and_data_dir(tmp_path, server, small_counts):
    root, url = server  # serves an empty directory
    data_dir = tmp_path / "data"
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("binarized-mnist", data_dir, base_url=url)
    msg = str(e.value)
    assert url + "binarized_mnist_train.amat" in msg and "404" in msg
    assert str(data_dir) in msg
    assert isinstance(e.value, FileNotFoundError)
    assert list(data_dir.iterdir()) == []


def test_connection_refused_is_dataset_not_found(tmp_path, small_counts):
    srv, thread, url = _serve(tmp_path)
    srv.shutdown()
    srv.server_close()  # nothing listens on that port any more
    thread.join(5)
    with pytest.raises(DatasetNotFoundError, match=r"127\.0\.0\.1.*binarized_mnist_train\.amat.*place"):
        load_dataset("binarized-mnist", tmp_path / "data", base_url=url)


def test_connection_closed_early(tmp_path):
    srv, thread, url = _serve(tmp_path, _LyingHandler)
    try:
        dest = tmp_path / "out" / "file.amat"
        with pytest.raises(DataError, match="truncated"):
            download_file(url + "file.amat", dest)
        assert list(dest.parent.iterdir()) == []
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)
