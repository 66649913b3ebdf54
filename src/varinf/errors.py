"""Exceptions raised on bad input. Each message names the problem and the fix.

``ConvergenceWarning`` (also ``varinf.ConvergenceWarning``): an iterative fit of ``varinf.classical``
stopped at its iteration limit before meeting its tolerance. It subclasses
``sklearn.exceptions.ConvergenceWarning``, so scikit-learn's usual filter silences it too; it is
created on first access, so that ``import varinf`` does not import scikit-learn.
"""

from __future__ import annotations


class VarinfError(Exception):
    """Base class of every error varinf raises on purpose."""


class DataError(VarinfError, ValueError):
    """Data that cannot be used: wrong shape or dtype, NaN/inf, out of range, non-binary, corrupt file."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    """A dataset name that is unknown, or files that are missing from the data directory."""


class CheckpointError(VarinfError):
    """A checkpoint that is missing, corrupt, or belongs to another configuration."""


class ConfigError(VarinfError, ValueError):
    """A setting that is unknown or out of range."""


def __getattr__(name):
    # ConvergenceWarning subclasses scikit-learn's, so it is defined on first use: ``import varinf``
    # does not import scikit-learn (about 1 s), only the classical models and this name do.
    if name != "ConvergenceWarning":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    global ConvergenceWarning
    from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning

    class ConvergenceWarning(SklearnConvergenceWarning):
        """An iterative fit stopped at its iteration limit before meeting its tolerance.

        A subclass of ``sklearn.exceptions.ConvergenceWarning`` (itself a ``UserWarning``), so the
        filter scikit-learn users already write silences varinf's too:
        ``warnings.filterwarnings("ignore", category=sklearn.exceptions.ConvergenceWarning)``.
        """

    ConvergenceWarning.__module__ = __name__
    return ConvergenceWarning
