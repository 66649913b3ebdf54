"""How varinf touches files: never through a symbolic link in a run directory, only regular files read.

Everything varinf writes in a run directory goes through ``varinf.checkpoint.atomic_write_bytes``
(temporary file, rename), which refuses a symbolic link at the target's name; the directories it
writes into (``checkpoints/``, ``figures/``, ``eval.partial/``) must be real directories
(:func:`real_dir`), and the lock file is opened with ``O_NOFOLLOW`` (``varinf.runlock``). The run
directory itself (``--out``) may be a link, e.g. to a scratch disk: that is where the user put it.

Files are read through :func:`read_regular`: opened without blocking, refused unless they are
regular files (a FIFO or a device would block for ever or never end), and refused above a size.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

from varinf.errors import CheckpointError, VarinfError

#: The most characters of a user's value an error message repeats (the rest is elided).
MAX_SHOWN = 120


def shown(value, limit: int = MAX_SHOWN) -> str:
    """``repr(value)`` cut to ``limit`` characters, saying how long it was."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit // 2]}…{text[-limit // 4:]} ({len(text)} characters)"


def refuse_link(path: str | os.PathLike, error: type[VarinfError] = CheckpointError) -> None:
    """Raise ``error`` when ``path`` is a symbolic link (varinf never writes, locks or deletes through one)."""
    if os.path.islink(path):
        raise error(f"{path} is a symbolic link; varinf never writes, locks or deletes through a link inside a run "
                    "directory: replace the link by a real file or directory, or choose another run directory")


def real_dir(path: str | os.PathLike, error: type[VarinfError] = CheckpointError) -> Path:
    """``path`` as a directory that is no link, created if absent; ``error`` when it is a link or a file."""
    path = Path(path)
    refuse_link(path, error)
    path.mkdir(parents=True, exist_ok=True)
    if not path.is_dir() or path.is_symlink():
        raise error(f"{path} is not a directory; varinf needs it for the run's files")
    return path


def open_regular(path: str | os.PathLike, flags: int = os.O_RDONLY, mode: int = 0o644, *, follow: bool = True,
                 error: type[VarinfError] = CheckpointError) -> int:
    """A file descriptor of ``path`` opened with ``flags``; ``error`` unless it is a regular file.

    Opened with ``O_NONBLOCK`` (a FIFO then opens at once instead of waiting for a writer) and,
    unless ``follow``, ``O_NOFOLLOW``. FileNotFoundError passes through unchanged.
    """
    nofollow = 0 if follow else os.O_NOFOLLOW
    try:
        fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC | nofollow, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow:
            refuse_link(path, error)
        if exc.errno in (errno.ENXIO, errno.ENODEV):       # a FIFO with no reader opened for writing, a socket
            raise error(f"{path} is not a regular file (a FIFO, socket or device); varinf reads and writes only "
                        "regular files") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO, socket or device"
            raise error(f"{path} is not a regular file ({kind}); varinf reads and writes only regular files")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: str | os.PathLike, limit: int | None = None, *, follow: bool = True,
                 error: type[VarinfError] = CheckpointError) -> bytes:
    """The bytes of the regular file ``path`` (``error`` for a FIFO, device, or a file above ``limit`` bytes)."""
    fd = open_regular(path, follow=follow, error=error)
    try:
        size = os.fstat(fd).st_size
        if limit is not None and size > limit:
            raise error(f"{path} holds {size} bytes, more than the {limit} a file of this kind can hold; "
                        "it is not a file varinf wrote")
        chunks = []
        while chunk := os.read(fd, 1 << 24):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def is_regular_file(path: str | os.PathLike) -> bool:
    """True for a regular file that is no symbolic link (what varinf may delete)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


__all__ = ["shown", "refuse_link", "real_dir", "open_regular", "read_regular", "is_regular_file", "MAX_SHOWN"]
