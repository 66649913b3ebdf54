"""Atomic, verified downloads: https only, stream to a temporary file, fsync, validate, check the
pinned SHA-256, then rename into place.

Plain http is refused, also when a server redirects to it; the one exception is a server on this
machine's loopback interface (``http://127.0.0.1:PORT/``, ``http://localhost/``: a local mirror,
or the test suite's server), whose traffic never leaves the machine.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import logging
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, TypeVar

from ..errors import DataError, DatasetNotFoundError

__all__ = ["download_file", "check_url", "DOWNLOAD_TIMEOUT"]

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT = 60.0  # seconds without data before giving up
_CHUNK = 1 << 20

T = TypeVar("T")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> None:
    """Raise DataError unless ``url`` is https (or http to this machine's loopback address)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname)):
        return
    raise DataError(f"refusing to download {url}: only https:// URLs are allowed (plain http:// only from "
                    "this machine, e.g. a local mirror at http://127.0.0.1:PORT/)")


class _SecureRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to a URL that ``check_url`` accepts (no downgrade to http)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        check_url(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SecureRedirects)


def download_file(
    url: str,
    dest: str | os.PathLike,
    *,
    validate: Callable[[Path], T] | None = None,
    sha256: str | None = None,
    timeout: float | None = None,
) -> T | None:
    """Download ``url`` to ``dest`` atomically and return ``validate(tmp_path)``.

    ``url`` must pass ``check_url``. The body is streamed to a temporary file next
    to ``dest``, fsynced and passed to ``validate`` (which raises DataError if the
    content is bad); its SHA-256 must equal ``sha256`` when given; only then is it
    renamed onto ``dest``. On any failure the temporary file is removed and
    ``dest`` is left untouched. Network failures raise DatasetNotFoundError naming
    the URL; truncated transfers and wrong content raise DataError.
    """
    check_url(url)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    manual = f"or place {dest.name} in {dest.parent} yourself"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.fchmod(fd, 0o644)  # mkstemp creates 0600; a cached dataset is readable by all
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            log.info("downloading %s -> %s", url, dest)
            try:
                with _OPENER.open(url, timeout=timeout or DOWNLOAD_TIMEOUT) as resp:
                    length = resp.headers.get("Content-Length")
                    received = 0
                    digest = hashlib.sha256()
                    while True:
                        chunk = resp.read(_CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
            except urllib.error.HTTPError as exc:
                raise DatasetNotFoundError(
                    f"download of {url} failed: HTTP {exc.code} {exc.reason}; check the URL "
                    f"(base_url or $VARINF_BMNIST_URL) {manual}"
                ) from exc
            except http.client.IncompleteRead as exc:
                raise DataError(
                    f"download of {url} was truncated after {len(exc.partial)} more bytes "
                    f"(connection closed early); retry {manual}"
                ) from exc
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                reason = getattr(exc, "reason", exc)
                raise DatasetNotFoundError(
                    f"download of {url} failed ({reason}); check your network connection {manual}"
                ) from exc
            if length is not None and length.isdigit() and received != int(length):
                raise DataError(f"download of {url} was truncated: got {received} of {length} bytes; retry {manual}")
            out.flush()
            os.fsync(out.fileno())
        result = validate(tmp) if validate is not None else None
        if sha256 is not None and digest.hexdigest() != sha256.lower():
            raise DataError(f"download of {url} has SHA-256 {digest.hexdigest()}, expected {sha256}: it is not "
                            f"the published file (a changed or tampered mirror?); {manual}")
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
        return result
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
