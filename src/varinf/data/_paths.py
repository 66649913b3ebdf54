"""Where dataset files live."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["resolve_data_dir", "DATA_DIR_ENV"]

DATA_DIR_ENV = "VARINF_DATA_DIR"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Return the data directory: ``data_dir``, else ``$VARINF_DATA_DIR``, else ``~/.cache/varinf``.

    The directory is not created; ``~`` is expanded.
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV, "")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "varinf"
