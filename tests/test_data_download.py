"""Downloading the binarized MNIST .amat files from a local HTTP server: atomic, https-only, SHA-256 pinned."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from varinf.data import load_dataset
from varinf.data import _binarized_mnist as bm
from varinf.data._download import check_url, download_file
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


class _DowngradingHandler(_QuietHandler):
    """Redirects every request to plain http on another host."""

    def do_GET(self):
        self.send_response(302)
        self.send_header("Location", "http://example.invalid/binarized_mnist_train.amat")
        self.end_headers()


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
    monkeypatch.setattr(bm, "AMAT_SHA256", {})  # the small files have no published hash; pinned where a test says
    monkeypatch.delenv("VARINF_BMNIST_URL", raising=False)


def fill(root: Path) -> dict[str, np.ndarray]:
    arrays = {
        s: (np.random.default_rng(i).random((n, DIM)) > 0.5).astype(np.uint8)
        for i, (s, n) in enumerate(COUNTS.items())
    }
    for s, a in arrays.items():
        (root / f"binarized_mnist_{s}.amat").write_bytes(amat_bytes(a))
    return arrays


def sha256_of(root: Path) -> dict[str, str]:
    return {s: hashlib.sha256((root / f"binarized_mnist_{s}.amat").read_bytes()).hexdigest() for s in COUNTS}


def test_download_lands_atomically(tmp_path, server, small_counts, monkeypatch):
    root, url = server
    arrays = fill(root)
    monkeypatch.setattr(bm, "AMAT_SHA256", sha256_of(root))        # pinned and matching
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


def assert_download_fails(tmp_path: Path, handler, match: str) -> None:
    """A download from a server with ``handler`` raises DataError matching ``match`` and leaves nothing."""
    srv, thread, url = _serve(tmp_path, handler)
    try:
        dest = tmp_path / "out" / "file.amat"
        with pytest.raises(DataError, match=match):
            download_file(url + "file.amat", dest)
        assert list(dest.parent.iterdir()) == []
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def test_connection_closed_early(tmp_path):
    assert_download_fails(tmp_path, _LyingHandler, "truncated")


def test_wrong_sha256_is_refused_and_leaves_nothing(tmp_path, server, small_counts, monkeypatch):
    root, url = server
    fill(root)
    pins = sha256_of(root)
    pins["valid"] = "ab" * 32                                       # a well-formed file, but not the pinned one
    monkeypatch.setattr(bm, "AMAT_SHA256", pins)
    data_dir = tmp_path / "data"
    with pytest.raises(DataError, match=rf"binarized_mnist_valid\.amat has SHA-256 [0-9a-f]{{64}}, expected {'ab' * 32}"):
        load_dataset("binarized-mnist", data_dir, base_url=url)
    assert sorted(p.name for p in data_dir.iterdir()) == ["binarized_mnist_train.amat"]


def amat_text(x: np.ndarray) -> bytes:
    """The published .amat layout, vectorised: "0 1 ... 0\\n" per image."""
    out = np.full((len(x), 2 * x.shape[1]), ord(" "), dtype=np.uint8)
    out[:, 0::2] = x + ord("0")
    out[:, -1] = ord("\n")
    return out.tobytes()


def test_pinned_sha256_are_those_of_the_published_files(shared_data_dir):
    """The .amat files are rebuilt byte for byte from the shared .npz (their SHA-1 match the ones other
    projects publish for the download), so their SHA-256 can be checked here without a network."""
    sha1 = {"train": "cf70514ec5f481e54ad3eb0e6c03c83326ff96f8", "valid": "13418487742e6ea6d48db7b5187353a20b1b1f8c",
            "test": "ca70bd7775e182596dec148d4dc1bc6bd6c4c5f4"}
    with np.load(shared_data_dir / "binarized_mnist.npz") as z:
        for s in ("train", "valid", "test"):
            text = amat_text(z[s])
            assert text[:8] == amat_bytes(z[s][:1])[:8] and len(text) == len(z[s]) * 2 * DIM
            assert hashlib.sha1(text).hexdigest() == sha1[s]
            assert hashlib.sha256(text).hexdigest() == bm.AMAT_SHA256[s]


@pytest.mark.parametrize("url", ["http://www.cs.toronto.edu/x.amat", "ftp://127.0.0.1/x.amat",
                                 "file:///etc/passwd", "http://127.0.0.1.example.org/x.amat"])
def test_only_https_or_loopback_http(tmp_path, url):
    with pytest.raises(DataError, match="only https://"):
        download_file(url, tmp_path / "x.amat")
    assert list(tmp_path.iterdir()) == []


def test_loopback_http_and_https_are_allowed():
    for url in ("https://www.cs.toronto.edu/", "http://127.0.0.1:8000/", "http://localhost/", "http://[::1]:80/"):
        check_url(url)
    assert bm.DEFAULT_BMNIST_URL.startswith("https://")


def test_redirect_to_plain_http_is_refused(tmp_path):
    assert_download_fails(tmp_path, _DowngradingHandler, r"refusing to download http://example\.invalid/")
