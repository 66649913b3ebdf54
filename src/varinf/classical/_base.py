"""The one coordinate-ascent loop shared by every classical model.

Goodfellow, Bengio & Courville 2016 §19.1-19.2 (Neal & Hinton, 1999): EM, MAP learning and mean-field
variational inference are all *coordinate ascent* on one objective, the evidence
lower bound

    L(v, theta, q) = E_{h~q}[log p(h, v)] + H(q)                        (19.7)

Each model splits its unknowns into blocks (EM: ``q`` then ``theta``; sparse
coding: ``H`` then ``W``; mean field: the factors ``q_1 ... q_J``) and supplies

* ``_blocks()``: the blocks in sweep order, each a method that maximises the
  objective over that block with the others held fixed;
* ``_bound_terms(data)``: the objective at the current state as a dict of
  labelled terms, each with its equation cited in the model's own module.

[`CoordinateAscent.fit`][varinf.classical._base.CoordinateAscent.fit] sweeps the blocks until the change of the bound is
below ``tol`` or ``max_iter`` sweeps have run (then it warns
[`varinf.errors.ConvergenceWarning`][varinf.errors.ConvergenceWarning]). It records the bound after *every*
block in ``bound_trace_`` (so the monotonicity of coordinate ascent is visible
block by block) and, once per sweep, after the block named by ``_monitor``, in
``lower_bounds_`` - the quantity whose change is compared with ``tol``.
"""

from __future__ import annotations

import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_array, check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from varinf.errors import ConfigError, ConvergenceWarning, DataError

__all__ = ["CoordinateAscent", "check_data", "check_fitted", "validate_input"]


def _data_error(exc: Exception, X, name: str) -> Exception:
    """Turn a scikit-learn validation error into a one-line varinf error of a compatible type.

    scikit-learn's own messages are kept where its estimator checks look for them
    ("Reshape your data", "Complex data not supported", "0 feature(s)", "X has 2 features,
    but ... is expecting 3"); only the array dumps that follow some of them are dropped.
    ValueErrors become [`DataError`][varinf.classical._base.DataError] (a ValueError); a non-numeric object entry stays a
    TypeError, as scikit-learn raises it.
    """
    msg = str(exc)
    first = msg.splitlines()[0].rstrip(":") if msg else type(exc).__name__
    if isinstance(exc, TypeError) and msg.startswith("Sparse data"):
        return DataError(f"{name} is a sparse matrix; sparse input is not supported: pass a dense array "
                         "(X.toarray()).")
    if isinstance(exc, TypeError):
        return TypeError(f"{name} must be numeric; {first.rstrip('.')}.")
    if msg.startswith("Expected 2D array") or msg.startswith("Found array with dim"):
        return DataError(f"{name} must be 2-D (n_samples, n_features); got an array of shape {np.shape(X)}. "
                         "Reshape your data: X.reshape(-1, 1) for a single feature, X.reshape(1, -1) for "
                         "a single sample.")
    if msg.startswith("Complex data not supported"):
        return DataError(f"{name} is complex: Complex data not supported; pass real values (e.g. X.real).")
    if "convert" in msg:
        return DataError(f"{name} must be numeric; it could not be converted to float64 ({first}).")
    return DataError(f"{name}: {first}")


def _finish_data(arr: np.ndarray, *, min_samples: int, n_features: int | None, name: str) -> np.ndarray:
    """The checks scikit-learn's validation leaves to varinf: finiteness (with counts), sample count, width."""
    finite = np.isfinite(arr)
    if not finite.all():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(arr.size - finite.sum() - n_nan)
        raise DataError(
            f"{name} contains non-finite values ({n_nan} NaN, {n_inf} inf); remove or impute them before fitting."
        )
    if arr.shape[0] < min_samples:
        raise DataError(f"{name} has n_samples={arr.shape[0]} but at least {min_samples} are needed (n_components).")
    if n_features is not None and arr.shape[1] != n_features:
        raise DataError(f"{name} has {arr.shape[1]} features but the model was fitted with {n_features}.")
    return arr


def check_data(X, *, min_samples: int = 1, n_features: int | None = None, name: str = "X") -> np.ndarray:
    """Return ``X`` as a C-contiguous 2-D float64 array, or raise [`DataError`][varinf.classical._base.DataError].

    Conversion, dimensionality, emptiness, complex and sparse input are checked by
    ``sklearn.utils.check_array``; the one-line message names the problem: not numeric,
    not 2-D, empty, complex, sparse, non-finite values (with their count), fewer samples
    than ``min_samples``, or a number of features different from ``n_features``.
    For estimators use `CoordinateAscent._validate` / `validate_input`, which
    also record or compare ``n_features_in_``.
    """
    try:
        arr = check_array(X, dtype=np.float64, order="C", ensure_all_finite=False, input_name=name)
    except (TypeError, ValueError) as exc:
        raise _data_error(exc, X, name) from exc
    return _finish_data(arr, min_samples=min_samples, n_features=n_features, name=name)


def validate_input(estimator, X, *, reset: bool, min_samples: int = 1, name: str = "X") -> np.ndarray:
    """`check_data` through ``sklearn.utils.validation.validate_data``.

    ``reset=True`` (in ``fit``) records ``n_features_in_`` (and ``feature_names_in_``);
    ``reset=False`` (predict, transform, score) compares X with them.
    """
    try:
        arr = validate_data(estimator, X, reset=reset, dtype=np.float64, order="C", ensure_all_finite=False)
    except (TypeError, ValueError) as exc:
        raise _data_error(exc, X, name) from exc
    return _finish_data(arr, min_samples=min_samples, n_features=None, name=name)


def check_fitted(estimator) -> None:
    """``sklearn.utils.validation.check_is_fitted`` with varinf's one-line message (a NotFittedError)."""
    check_is_fitted(estimator, msg="This %(name)s is not fitted yet; call fit first.")


def _check_int(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}; got {value!r}.")
    return int(value)


def _check_real(value, name: str, low: float, *, strict: bool = False) -> float:
    bad = isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(value)
    if not bad:
        bad = value <= low if strict else value < low
    if bad:
        op = ">" if strict else ">="
        raise ConfigError(f"{name} must be a finite number {op} {low}; got {value!r}.")
    return float(value)


class CoordinateAscent(BaseEstimator, ABC):
    """Abstract coordinate ascent on a lower bound (scikit-learn estimator contract).

    Parameters
    ----------
    tol : float
        Stop when the change of the monitored bound between two sweeps is below
        ``tol``. How the bound is scaled before the comparison is fixed by the
        subclass's ``_tol_mode``: ``"mean"`` (bound per sample, as scikit-learn's
        ``GaussianMixture``), ``"sum"`` (total bound, as scikit-learn's
        ``BayesianGaussianMixture``) or ``"relative"`` (per-sample bound, change
        divided by ``|bound|``).
    max_iter : int
        Maximum number of sweeps.
    random_state : int, RandomState or None
        Seeds the initialisation (``sklearn.utils.check_random_state``, so an
        integer seed draws exactly what scikit-learn draws with the same seed).
    verbose : int
        If positive, print the monitored bound every ``verbose`` sweeps.

    Attributes
    ----------
    lower_bound_ : float
        Last monitored bound (per sample, except for ``_tol_mode == "sum"``: total).
    lower_bounds_ : list of float
        The monitored bound after each sweep.
    bound_terms_ : dict of str to float
        The labelled terms of the (unscaled, total) bound at the last monitored point.
    bound_trace_ : list of (str, float)
        ``(block name, bound)`` after every block update of every sweep, same
        scaling as ``lower_bounds_``; non-decreasing for exact coordinate ascent.
    n_iter_ : int
        Number of sweeps run.
    converged_ : bool
        Whether the tolerance was met before ``max_iter``.
    fit_time_ : float
        Wall-clock seconds spent in ``fit``.
    """

    #: how ``tol`` is compared with the change of the monitored bound
    _tol_mode: str = "mean"
    #: block after which the bound enters ``lower_bounds_`` (``None``: after the sweep)
    _monitor: str | None = None

    def __init__(self, *, tol: float, max_iter: int, random_state=None, verbose: int = 0):
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state
        self.verbose = verbose

    # ----------------------------------------------------------------- hooks
    def _check_params(self, X: np.ndarray) -> None:
        """Validate hyper-parameters against the data (raise ConfigError/DataError)."""

    def _min_samples(self) -> int:
        return 1

    def _prepare(self, X: np.ndarray):
        """Turn validated data into what the blocks consume (default: X itself)."""
        return X

    @abstractmethod
    def _initialize(self, data, random_state: np.random.RandomState) -> None:
        """Set the initial state (parameters and/or variational factors)."""

    @abstractmethod
    def _blocks(self) -> Sequence[tuple[str, Callable[[object], None]]]:
        """The coordinate updates of one sweep, in order: ``[(name, update(data)), ...]``."""

    @abstractmethod
    def _bound_terms(self, data) -> dict[str, float]:
        """The terms of the total objective (lower bound) at the current state, by label.

        Each subclass labels every term and cites its equation where it computes it.
        """

    def _finalize(self, data) -> None:
        """Hook run once after the last sweep (e.g. to set public attributes)."""

    # ------------------------------------------------------------------ loop
    def _scale(self, bound: float) -> float:
        return bound if self._tol_mode == "sum" else bound / self._n_fit_samples

    def _has_converged(self, prev: float, cur: float) -> bool:
        change = cur - prev
        if self._tol_mode == "relative":
            return abs(change) <= self._tol * max(abs(cur), np.finfo(float).tiny)
        return abs(change) < self._tol

    def _relative_note(self, change: float) -> str:
        if self._tol_mode != "relative" or not self.lower_bounds_:
            return ""
        return f", relative {abs(change) / max(abs(self.lower_bounds_[-1]), np.finfo(float).tiny):.3g}"

    def fit(self, X, y=None):
        """Run coordinate ascent on ``X`` until converged; return ``self``."""
        t0 = time.perf_counter()
        self._tol = _check_real(self.tol, "tol", 0.0)
        self._max_iter = _check_int(self.max_iter, "max_iter", 1)
        X = self._validate(X, reset=True)
        self._check_params(X)
        self._n_fit_samples = X.shape[0]
        rng = check_random_state(self.random_state)
        data = self._prepare(X)
        self._initialize(data, rng)

        blocks = list(self._blocks())
        names = [name for name, _ in blocks]
        monitor = self._monitor if self._monitor is not None else names[-1]
        if monitor not in names:  # pragma: no cover - programming error in a subclass
            raise ConfigError(f"monitor block {monitor!r} is not one of {names}")

        self.bound_trace_: list[tuple[str, float]] = []
        self.lower_bounds_: list[float] = []
        prev = -np.inf
        change = np.inf
        converged = False
        n_iter = 0
        for n_iter in range(1, self._max_iter + 1):
            cur = None
            for name, update in blocks:
                update(data)
                terms = self._bound_terms(data)
                value = self._scale(float(sum(terms.values())))
                self.bound_trace_.append((name, value))
                if name == monitor:
                    cur = value
                    self.bound_terms_ = {k: float(v) for k, v in terms.items()}
            self.lower_bounds_.append(cur)
            if self.verbose and n_iter % int(self.verbose) == 0:
                print(f"{type(self).__name__} sweep {n_iter}: bound {cur:.10g} (change {cur - prev:.3g})")
            change = cur - prev
            if self._has_converged(prev, cur):
                converged = True
                break
            prev = cur

        self.n_iter_ = n_iter
        self.converged_ = converged
        self.lower_bound_ = self.lower_bounds_[-1]
        self._finalize(data)
        self.fit_time_ = time.perf_counter() - t0
        if not converged:
            warnings.warn(
                f"{type(self).__name__} did not converge in max_iter={self._max_iter} sweeps "
                f"(last change {change:.3g}{self._relative_note(change)}, tol={self._tol:g}); "
                "increase max_iter or tol.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _validate(self, X, *, reset: bool = False, name: str = "X") -> np.ndarray:
        """Validate data for ``fit`` (``reset=True``) or for a fitted model (``reset=False``)."""
        if not reset:
            self._check_fitted()
        return validate_input(self, X, reset=reset, min_samples=self._min_samples() if reset else 1, name=name)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "n_iter_")

    def _check_fitted(self) -> None:
        check_fitted(self)
