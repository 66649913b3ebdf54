"""Exceptions raised on bad input. Each message names the problem and the fix."""

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


class ConvergenceWarning(UserWarning):
    """An iterative fit stopped at its iteration limit before meeting its tolerance."""
