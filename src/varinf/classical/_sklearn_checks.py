"""scikit-learn's estimator checks for the classical estimators: the instances checked and their expected failures.

Shared by ``tests/test_classical_sklearn_checks.py`` (``parametrize_with_checks``) and
``benchmarks/sklearn_checks.py`` (a pass/fail table per estimator). The instances use small
iteration budgets so that all the checks run in a few seconds on one core.

Expected failures are given to scikit-learn through its own mechanism (since 1.6 the
``expected_failed_checks`` argument of ``check_estimator`` / ``parametrize_with_checks``;
the old ``_xfail_checks`` tag is gone). Only two estimators have any, both for one intrinsic
reason: their data width is fixed by the model, while these checks fit random X of
other widths.
"""

from __future__ import annotations

from collections import Counter

from .cavi import BayesianGaussianMixture, UnivariateGaussianCAVI
from .em import GaussianMixture
from .fhmm import FactorialHMM
from .latent_factor import BinaryLatentFactorModel, MeanFieldLatentFactor
from .loglinear import BayesianLogLinear
from .sparse_coding import SparseCoding

__all__ = ["check_instances", "expected_failed_checks", "run_checks"]

#: checks that fit (or predict on) X whose width differs from a fixed model width
_WIDTH_CHECKS = (
    "check_estimators_overwrite_params",
    "check_estimators_fit_returns_self",
    "check_readonly_memmap_input",
    "check_n_features_in_after_fitting",
    "check_positive_only_tag_during_fit",
    "check_estimators_dtypes",
    "check_dtype_object",
    "check_fit2d_1sample",
    "check_fit_idempotent",
    "check_fit_check_is_fitted",
    "check_n_features_in",
)
_UNIVARIATE_ONLY = (
    "check_fit_score_takes_y",
    "check_dont_overwrite_parameters",
    "check_pipeline_consistency",
    "check_estimators_nan_inf",
    "check_estimators_pickle",
    "check_f_contiguous_array_estimator",
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
    "check_dict_unchanged",
    "check_fit2d_predict1d",
)

_EXPECTED_FAILURES: dict[type, dict[str, str]] = {
    MeanFieldLatentFactor: {
        **{name: "the fixed BinaryLatentFactorModel sets n_features = model.n_outputs (3 here); "
                 "the check fits X of another width" for name in _WIDTH_CHECKS},
        "check_fit2d_1feature": "the fixed BinaryLatentFactorModel sets n_features = model.n_outputs (3 here); "
                                "a 1-feature X is rejected for its width, not with the message the check expects",
    },
    UnivariateGaussianCAVI: {
        name: "a univariate model (Bishop 2006 §10.1.3): X must be (n_samples, 1); the check fits X with "
              "2 or more features" for name in _WIDTH_CHECKS + _UNIVARIATE_ONLY
    },
}


def check_instances() -> list:
    """One small instance of every scikit-learn-style estimator in ``varinf.classical``."""
    return [
        GaussianMixture(n_components=2, max_iter=20, random_state=0),
        BayesianGaussianMixture(n_components=2, max_iter=20, random_state=0),
        SparseCoding(n_components=3, max_iter=10, random_state=0),
        FactorialHMM(n_chains=2, n_states=2, max_iter=5, random_state=0),
        BayesianLogLinear(max_iter=50),
        MeanFieldLatentFactor(BinaryLatentFactorModel.random(2, 3), max_iter=20, random_state=0),
        UnivariateGaussianCAVI(max_iter=20),
    ]


def expected_failed_checks(estimator) -> dict[str, str]:
    """``{check name: intrinsic reason}`` for ``estimator`` (empty for all but two estimators)."""
    return dict(_EXPECTED_FAILURES.get(type(estimator), {}))


def run_checks(estimator, *, use_expected_failures: bool = True) -> tuple[Counter, list[dict], str | None]:
    """Run ``check_estimator`` without raising; return (status counts, result records, abort message).

    The abort message is set when the checker itself stops (e.g. on inconsistent tags); the
    counts then cover the checks run before it stopped.
    """
    import warnings

    from sklearn.utils.estimator_checks import check_estimator

    records: list[dict] = []

    def callback(estimator, check_name, exception, status, expected_to_fail, expected_to_fail_reason):
        records.append({"check_name": check_name, "status": status, "exception": exception,
                        "reason": expected_to_fail_reason})

    xfail = expected_failed_checks(estimator) if use_expected_failures else None
    aborted = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            check_estimator(estimator, expected_failed_checks=xfail, on_fail=None, on_skip=None, callback=callback)
        except Exception as exc:  # noqa: BLE001 - the checker's own abort is what is reported
            aborted = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return Counter(r["status"] for r in records), records, aborted
