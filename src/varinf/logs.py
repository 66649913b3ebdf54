"""Where varinf's messages go: the ``varinf`` logger, shown on stderr by `enable_logging`.

varinf reports through Python's ``logging`` (logger ``varinf``): training's per-epoch lines and
early stopping at INFO, an evaluation's cost estimate at INFO, details at DEBUG. A library adds
no handler of its own, so in Python those lines are silent until the application configures
logging; ``varinf.enable_logging()`` is the one-call switch that prints them as the command
line does (``varinf train`` calls it too)::

    import varinf
    varinf.enable_logging()                      # INFO: the per-epoch lines, as varinf train prints them
    varinf.train(varinf.make_config(dataset="digits", latent_dim=2, epochs=5), "runs/demo")

Any other logging set-up works as well (``logging.basicConfig(level=logging.INFO)`` shows the
same lines through the root logger).
"""

from __future__ import annotations

import logging
import sys

from varinf.errors import ConfigError

__all__ = ["enable_logging"]

LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR}


class _TqdmHandler(logging.Handler):
    """Log lines to stderr through ``tqdm.write``, so that they do not tear a progress bar on a terminal."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm.auto import tqdm
        tqdm.write(self.format(record), file=sys.stderr)


def enable_logging(level: str | int = "INFO") -> logging.Logger:
    """Print the ``varinf`` logger's messages at ``level`` and above on stderr, one line each.

    ``level``: "DEBUG", "INFO" (the per-epoch lines; the default), "WARNING" (warnings and errors
    only) or "ERROR", or a ``logging`` level number. Calling it again replaces the handler it
    added before (no line is printed twice). The messages stop propagating to the root logger,
    so an application's own root handler does not print them a second time. Returns the logger.
    """
    if isinstance(level, str) and level.upper() in LEVELS:
        level = LEVELS[level.upper()]
    elif isinstance(level, bool) or not isinstance(level, int):
        raise ConfigError(f"level must be one of {list(LEVELS)} or a logging level number, got {level!r}")
    logger = logging.getLogger("varinf")
    for old in [h for h in logger.handlers if isinstance(h, _TqdmHandler)]:
        logger.removeHandler(old)
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger
