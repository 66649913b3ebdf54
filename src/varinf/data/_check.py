"""Validation of user data: shape, dtype, finiteness, range, binarity."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import DataError

__all__ = ["check_data"]


def _to_array(x: Any, what: str) -> np.ndarray | torch.Tensor:
    """A numpy array (CPU data) or a torch tensor (other devices) of a real numeric dtype."""
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise DataError(f"{what} has complex dtype {x.dtype}; expected real numbers in [0, 1]")
        x = x.detach()
        if x.device.type != "cpu":
            return x
        if x.dtype == torch.bfloat16:
            x = x.to(torch.float32)
        return x.resolve_conj().resolve_neg().numpy()
    try:
        a = np.asarray(x)
    except Exception as exc:  # ragged nested lists and the like
        raise DataError(f"{what} cannot be converted to a numeric array: {exc}") from exc
    if a.dtype.kind not in "biuf":
        raise DataError(
            f"{what} has non-numeric dtype {a.dtype!s}; expected a numeric (float, int or bool) "
            "array with values in [0, 1]"
        )
    return a


def _first(mask: np.ndarray | torch.Tensor) -> tuple[int, int]:
    """(row, column) of the first True entry of a 2-D mask."""
    if isinstance(mask, torch.Tensor):
        flat = int(mask.reshape(-1).nonzero()[0, 0])
    else:
        flat = int(np.flatnonzero(mask)[0])
    r, c = divmod(flat, mask.shape[1])
    return r, c


def check_data(
    x: Any,
    *,
    what: str = "data",
    require_binary: bool = False,
    dim: int | None = None,
) -> torch.Tensor:
    """Validate a data matrix and return it as a float32 tensor of shape (N, D).

    ``x`` is a numpy array or torch tensor (N, D) of floats, ints or bools with
    finite values in [0, 1] (exactly 0/1 when ``require_binary``); ``dim``
    fixes D. A torch input keeps its device; float32 input (numpy or torch)
    is returned without a copy, sharing memory.
    ``what`` names the data in error messages. Raises
    [`DataError`][varinf.errors.DataError] on any problem.
    """
    a = _to_array(x, what)
    shape = tuple(a.shape)
    if len(shape) != 2:
        hint = ""
        if len(shape) > 2:
            hint = f"; flatten each item first, e.g. x.reshape({shape[0]}, -1)"
        elif len(shape) == 1:
            hint = "; for a single item use x.reshape(1, -1), for one feature x.reshape(-1, 1)"
        raise DataError(
            f"{what} has shape {shape} ({len(shape)}-D); expected a 2-D array (N, D) with one item per row{hint}"
        )
    n, d = shape
    if dim is not None and d != dim:
        raise DataError(f"{what} has {d} features per row (shape {shape}); expected {dim}")
    if n == 0 or d == 0:
        raise DataError(f"{what} is empty (shape {shape}); expected at least one row and one column")

    is_torch = isinstance(a, torch.Tensor)
    is_float = a.is_floating_point() if is_torch else a.dtype.kind == "f"
    is_bool = (a.dtype == torch.bool) if is_torch else a.dtype.kind == "b"
    if not is_bool:
        lo, hi = a.min().item(), a.max().item()  # NaN propagates
        if is_float and not (np.isfinite(lo) and np.isfinite(hi)):
            finite = torch.isfinite(a) if is_torch else np.isfinite(a)
            n_nan = int((torch.isnan(a) if is_torch else np.isnan(a)).sum())
            n_inf = int((~finite).sum()) - n_nan
            r, c = _first(~finite)
            raise DataError(
                f"{what} contains {n_nan} NaN and {n_inf} infinite value(s); the first is at row {r}, "
                f"column {c} (value {a[r, c].item()}); remove or impute them"
            )
        if lo < 0 or hi > 1:
            out = (a < 0) | (a > 1)
            r, c = _first(out)
            hint = " (e.g. x / 255 for 8-bit images)" if 1 < hi <= 255 and lo >= 0 else ""
            raise DataError(
                f"{what} has {int(out.sum())} value(s) outside [0, 1] (min {lo:g}, max {hi:g}; first at "
                f"row {r}, column {c}); scale the data to [0, 1]{hint}"
            )
        if require_binary and is_float:
            nonbin = (a != 0) & (a != 1)
            n_nb = int(nonbin.sum())
            if n_nb:
                r, c = _first(nonbin)
                raise DataError(
                    f"{what} must be binary (0/1) but has {n_nb} non-binary value(s) (first at row {r}, "
                    f"column {c}: {a[r, c].item():g}); binarize it, e.g. (x > 0.5), or use a "
                    "likelihood for continuous data"
                )
    if is_torch:
        return a.to(torch.float32)
    if a.dtype != np.float32 or not a.flags.c_contiguous or not a.flags.writeable:
        a = np.ascontiguousarray(a, dtype=np.float32)
        if not a.flags.writeable:
            a = a.copy()
    if isinstance(x, torch.Tensor) and x.dtype == torch.float32:
        return x.detach()
    return torch.from_numpy(a)
