"""One writer per run directory: an exclusive ``flock`` on ``RUN_DIR/.lock`` for the whole training.

``fcntl.flock`` (standard library, POSIX) rather than the ``filelock`` package: the kernel drops
the lock when its holder dies, even by SIGKILL, so a killed run never blocks the next one; and
the lock file can hold the holder's PID for the error message (``filelock`` truncates the file it
locks and is only an indirect dependency here). The file itself is never deleted: deleting a lock
file lets a third process lock a fresh inode while a second one still holds the old. Locks of
different open files exclude each other even within one process. The lock file is opened with
``O_NOFOLLOW`` and must be a regular file: a symbolic link (or a FIFO) named ``.lock`` is refused
with a one-line error before anything is written, so no file outside the run is ever truncated.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from varinf.errors import CheckpointError
from varinf.runfiles import open_regular

LOCK_NAME = ".lock"


class RunLockedError(CheckpointError):
    """The run directory is being written by another process."""


@contextmanager
def run_lock(run_dir: str | os.PathLike, hint: str = "choose another --out") -> Iterator[Path]:
    """Hold the writer lock of ``run_dir`` (created if absent) for the ``with`` block.

    Raises RunLockedError naming the holder's PID at once when another process holds it; its
    message ends with ``hint`` (the setting that picks another directory).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    fd = open_regular(path, os.O_RDWR | os.O_CREAT, 0o644, follow=False)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown, it is starting"
            raise RunLockedError(f"{run_dir} is being written by another varinf process (PID {holder}); "
                                 f"wait for it to finish or stop it, or {hint}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)                    # no stale PID once released; the lock goes with close
    finally:
        os.close(fd)


__all__ = ["run_lock", "RunLockedError", "LOCK_NAME"]
