"""Fast parsing and validation of ``.amat`` text files (one 0/1 image per line)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError

__all__ = ["read_amat", "parse_amat"]

_WS = np.zeros(256, dtype=bool)
_WS[[ord(" "), ord("\t"), ord("\r"), ord("\n"), ord("\v"), ord("\f")]] = True


def read_amat(
    path: str | os.PathLike, *, expected_lines: int | None = None, dim: int = 784, name: str | None = None
) -> np.ndarray:
    """Read an ``.amat`` file into a uint8 array (N, dim) of 0/1.

    Raises DataError naming the file (or ``name``) and the 1-based line of the
    first problem; ``expected_lines`` (if given) must match the line count.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    return parse_amat(data, name=name or str(path), expected_lines=expected_lines, dim=dim)


def parse_amat(data: bytes, *, name: str = "<amat>", expected_lines: int | None = None, dim: int = 784) -> np.ndarray:
    """Parse ``.amat`` bytes: lines of ``dim`` whitespace-separated fields, each 0 or 1.

    Returns uint8 (N, dim). ``name`` is used in error messages.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    width = 2 * dim  # "d d ... d\n"
    # Fast path: the canonical layout, every line exactly `width` bytes.
    if len(buf) and len(buf) % width == 0:
        rows = buf.reshape(-1, width)
        if (rows[:, -1] == 10).all() and (rows[:, 1:-1:2] == 32).all():
            vals = rows[:, 0::2] - np.uint8(48)
            if (vals <= 1).all():
                out = np.ascontiguousarray(vals)
                _check_count(out.shape[0], expected_lines, name)
                return out
    return _parse_general(buf, name, expected_lines, dim)


def _check_count(n: int, expected: int | None, name: str) -> None:
    if expected is not None and n != expected:
        hint = " (truncated?)" if n < expected else ""
        raise DataError(f"{name} has {n} lines, expected {expected}{hint}")


def _parse_general(buf: np.ndarray, name: str, expected: int | None, dim: int) -> np.ndarray:
    """Any whitespace layout (tabs, CRLF, trailing blanks); trailing blank lines are ignored."""
    is_tok = ~_WS[buf]
    if not is_tok.any():
        raise DataError(f"{name} is empty; expected lines of {dim} space-separated 0/1 values")
    last = len(buf) - 1 - int(np.argmax(is_tok[::-1]))
    mid_line = not (buf[last + 1 :] == 10).any()  # no newline after the last value
    buf, is_tok = buf[: last + 1], is_tok[: last + 1]
    nl = np.flatnonzero(buf == 10)
    n_lines = len(nl) + 1
    chars = buf[is_tok]
    multi = bool((is_tok[1:] & is_tok[:-1]).any())  # some field is longer than one character
    bad_char = bool(((chars != 48) & (chars != 49)).any())
    tokens = _tokens(buf, is_tok) if (multi or bad_char) else None
    if tokens is None:
        counts = np.add.reduceat(is_tok, np.concatenate(([0], nl + 1)), dtype=np.int64)
    else:
        counts = np.bincount(np.searchsorted(nl, tokens[0]), minlength=n_lines)
    bad_count = counts != dim
    first_count_line = int(np.argmax(bad_count)) if bad_count.any() else n_lines
    first_tok_line = n_lines
    if tokens is not None:
        first_tok_line, field, text = _first_bad_token(buf, tokens, nl)
    if first_count_line < n_lines and first_count_line <= first_tok_line:
        ln = first_count_line
        extra = " (the file ends in the middle of this line: truncated?)" if ln == n_lines - 1 and mid_line else ""
        raise DataError(f"{name}: line {ln + 1}: {counts[ln]} fields, expected {dim}{extra}")
    if first_tok_line < n_lines:
        raise DataError(f"{name}: line {first_tok_line + 1} field {field}: {text!r} is not 0 or 1")
    _check_count(n_lines, expected, name)
    return (chars - np.uint8(48)).reshape(n_lines, dim)


def _tokens(buf: np.ndarray, is_tok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end offsets of the whitespace-separated fields."""
    prev = np.concatenate(([False], is_tok[:-1]))
    nxt = np.concatenate((is_tok[1:], [False]))
    return np.flatnonzero(is_tok & ~prev), np.flatnonzero(is_tok & ~nxt) + 1


def _first_bad_token(buf: np.ndarray, tokens: tuple[np.ndarray, np.ndarray], nl: np.ndarray) -> tuple[int, int, str]:
    """(0-based line, 1-based field, text) of the first field that is not a single 0 or 1."""
    starts, ends = tokens
    bad = (ends - starts != 1) | ((buf[starts] != 48) & (buf[starts] != 49))
    k = int(np.argmax(bad))
    ln = int(np.searchsorted(nl, starts[k]))
    line_start = 0 if ln == 0 else int(nl[ln - 1]) + 1
    field = k - int(np.searchsorted(starts, line_start)) + 1
    text = bytes(buf[starts[k] : ends[k]]).decode("latin-1")
    if len(text) > 20:
        text = text[:20] + "..."
    return ln, field, text
