"""scikit-learn compatibility of the classical estimators: every estimator check, plus the messages behind them.

``parametrize_with_checks`` runs scikit-learn's full estimator-check suite on one small instance
of every estimator of ``varinf.classical`` (``_sklearn_checks.check_instances``). Expected failures
(two estimators whose data width is fixed by the model) are passed to scikit-learn with their
reasons and run in strict mode: a listed check that starts to pass fails this test, so the list
cannot hide a check that works.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from varinf.classical import BayesianLogLinear, FactorialHMM, GaussianMixture, SparseCoding
from varinf.classical._sklearn_checks import check_instances, expected_failed_checks
from varinf.errors import DataError

pytestmark = pytest.mark.filterwarnings("ignore::varinf.errors.ConvergenceWarning")  # small max_iter on purpose


@parametrize_with_checks(check_instances(), expected_failed_checks=expected_failed_checks, xfail_strict=True)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_expected_failures_are_few_and_explained():
    """Only the two fixed-width estimators have expected failures, each with a stated reason."""
    listed = {type(est).__name__: expected_failed_checks(est) for est in check_instances()}
    assert {name for name, checks in listed.items() if checks} == {"MeanFieldLatentFactor", "UnivariateGaussianCAVI"}
    for checks in listed.values():
        assert all("features" in reason or "width" in reason for reason in checks.values())


def _data(n=40, d=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


@pytest.mark.parametrize("make", [lambda: GaussianMixture(2, max_iter=5), lambda: SparseCoding(2, max_iter=3),
                                  lambda: FactorialHMM(max_iter=2)])
def test_complex_and_sparse_input_raise_one_line_data_errors(make):
    X = _data()
    with pytest.raises(DataError, match="Complex data not supported") as err:
        make().fit(X + 1j * X)
    assert "\n" not in str(err.value)                                  # not silently fitted on the real part
    with pytest.raises(DataError, match="sparse input is not supported"):
        make().fit(sp.csr_matrix(X))
    with pytest.raises(DataError, match="Reshape your data") as err:
        make().fit(X[:, 0])
    assert "\n" not in str(err.value)


def test_fitted_models_check_width_and_fitted_state():
    X = _data()
    with pytest.raises(NotFittedError, match="not fitted"):
        GaussianMixture(2).predict(X)
    gm = GaussianMixture(2, max_iter=20, random_state=0).fit(X)
    with pytest.raises(DataError, match="X has 2 features, but GaussianMixture is expecting 3"):
        gm.predict(X[:, :2])


def test_sparse_coding_is_a_transformer_in_a_pipeline():
    X = _data(d=5)
    sc = SparseCoding(3, alpha=0.1, max_iter=5, random_state=0)
    codes = sc.fit_transform(X)
    np.testing.assert_allclose(codes, sc.transform(X))                # fit_transform = fit(X).transform(X)
    assert list(sc.get_feature_names_out()) == ["sparsecoding0", "sparsecoding1", "sparsecoding2"]
    pipe = make_pipeline(StandardScaler(), SparseCoding(3, max_iter=5, random_state=0))
    assert pipe.fit_transform(X).shape == (40, 3)


def test_loglinear_is_a_classifier():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    y = np.where(X[:, 0] + X[:, 1] > 0, "pos", "neg")
    with pytest.raises(NotFittedError):
        BayesianLogLinear().predict(X)
    with pytest.raises(ValueError, match="Unknown label type"):       # continuous y is not class labels
        BayesianLogLinear(max_iter=5).fit(X, X[:, 0])
    m = BayesianLogLinear(max_iter=300, lr=0.05).fit(X, y)
    assert list(m.classes_) == ["neg", "pos"] and m.n_features_in_ == 2
    assert m.score(X, y) > 0.9                                         # ClassifierMixin accuracy
    with pytest.raises(DataError, match="features"):
        m.predict(X[:, :1])


def test_check_ids_are_readable():
    """parametrize_with_checks names each test by the estimator's repr: no memory address in any of them."""
    import re

    for est in check_instances():
        assert not re.search(r"object at 0x[0-9a-f]+", repr(est)), repr(est)
    assert "model=BinaryLatentFactorModel(n_factors=2, n_outputs=3, noise_std=0.5)" in repr(check_instances()[5])
