"""Atomic downloads: stream to a temporary file, fsync, validate, then rename into place."""

from __future__ import annotations

import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, TypeVar

from ..errors import DataError, DatasetNotFoundError

__all__ = ["download_file", "DOWNLOAD_TIMEOUT"]

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


def download_file(
    url: str,
    dest: str | os.PathLike,
    *,
    validate: Callable[[Path], T] | None = None,
    timeout: float | None = None,
) -> T | None:
    """Download ``url`` to ``dest`` atomically and return ``validate(tmp_path)``.

    The body is streamed to a temporary file next to ``dest``, fsynced and
    passed to ``validate`` (which raises DataError if the content is bad);
    only then is it renamed onto ``dest``. On any failure the temporary file
    is removed and ``dest`` is left untouched. Network failures raise
    DatasetNotFoundError naming the URL; truncated transfers raise DataError.
    """
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
                with urllib.request.urlopen(url, timeout=timeout or DOWNLOAD_TIMEOUT) as resp:
                    length = resp.headers.get("Content-Length")
                    received = 0
                    while True:
                        chunk = resp.read(_CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
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
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
        return result
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
