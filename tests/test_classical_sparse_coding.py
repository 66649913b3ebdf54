"""MAP inference and sparse coding (varinf.classical.SparseCoding, fista, ista): Goodfellow et al. 2016 §19.3."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.decomposition import SparseCoder

from varinf.classical import SparseCoding, fista, ista, sparse_coding_objective
from varinf.classical.sparse_coding import soft_threshold
from varinf.errors import ConfigError, ConvergenceWarning, DataError


pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture(scope="module")
def digits():
    X = load_digits().data
    return X - X.mean(axis=0)


def random_dictionary(k, d, seed=0):
    D = np.random.default_rng(seed).normal(size=(k, d))
    return D / np.linalg.norm(D, axis=1, keepdims=True)


def assert_monotone(trace, rtol=1e-9):
    values = np.array([v for _, v in trace])
    drops = values[:-1] - values[1:]
    assert np.all(drops <= rtol * np.abs(values[:-1])), f"bound dropped by {drops.max():.3g}"


@pytest.mark.parametrize("solver", [fista, ista])
@pytest.mark.parametrize("n_atoms, alpha", [(32, 1.0), (96, 0.5), (96, 4.0)])
def test_codes_reach_sklearn_lasso_objective(digits, solver, n_atoms, alpha):
    X = digits[:400]
    D = random_dictionary(n_atoms, X.shape[1], seed=n_atoms)
    # SparseCoder's lasso_cd passes alpha / n_features to Lasso, whose loss is 1/(2 n_features) ||.||^2:
    # per row it minimises (1/D) (1/2 ||x - h D||^2 + alpha ||h||_1), the same minimiser as ours.
    ref = SparseCoder(D, transform_algorithm="lasso_cd", transform_alpha=alpha,
                      transform_max_iter=20000).transform(X)
    H, n_iter = solver(X, D, alpha, max_iter=20000, tol=1e-5)
    ours, theirs = sparse_coding_objective(X, H, D, alpha), sparse_coding_objective(X, ref, D, alpha)
    assert n_iter < 20000
    assert (ours - theirs) / theirs < 1e-4
    assert abs(ours - theirs) / theirs < 1e-4
    assert 0.0 < (H != 0).mean() < 1.0


def test_fista_codes_satisfy_lasso_optimality(digits):
    X = digits[:200]
    D = random_dictionary(48, X.shape[1], seed=1)
    alpha = 1.5
    H, _ = fista(X, D, alpha, max_iter=20000, tol=1e-12)
    grad = (H @ D - X) @ D.T  # gradient of the smooth part
    on = H != 0
    np.testing.assert_allclose(grad[on], -alpha * np.sign(H[on]), atol=1e-6)
    assert np.all(np.abs(grad[~on]) <= alpha + 1e-6)


def test_fista_needs_fewer_iterations_than_ista(digits):
    X = digits[:300]
    D = random_dictionary(96, X.shape[1], seed=2)
    _, it_fista = fista(X, D, 0.5, max_iter=20000, tol=1e-5)
    _, it_ista = ista(X, D, 0.5, max_iter=20000, tol=1e-5)
    assert it_fista < it_ista


def test_soft_threshold_is_the_l1_prox():
    z = np.array([-3.0, -0.5, 0.0, 0.2, 2.0])
    np.testing.assert_allclose(soft_threshold(z, 1.0), [-2.0, 0.0, 0.0, 0.0, 1.0])


@pytest.mark.parametrize("solver", ["fista", "ista"])
def test_alternating_objective_never_rises(digits, solver):
    model = SparseCoding(24, alpha=1.0, solver=solver, max_iter=15, tol=0.0, h_max_iter=50, random_state=0)
    with pytest.warns(ConvergenceWarning):
        model.fit(digits[:500])
    assert [name for name, _ in model.bound_trace_[:2]] == ["H", "W"]
    assert_monotone(model.bound_trace_)
    objective = sparse_coding_objective(digits[:500], model.codes_, model.components_, 1.0, model.intercept_)
    assert model.objective_ == pytest.approx(objective / 500, rel=1e-12)
    assert model.objective_ < -model.bound_trace_[0][1]  # learning improved on the first codes


def test_atoms_have_unit_norm_and_fit_reduces_error(digits):
    model = SparseCoding(16, alpha=0.5, max_iter=100, tol=1e-3, random_state=0).fit(digits)
    assert model.converged_
    norms = np.linalg.norm(model.components_, axis=1)
    assert np.all(norms <= 1.0 + 1e-12)
    used = np.abs(model.codes_).sum(axis=0) > 0
    np.testing.assert_allclose(norms[used], 1.0, atol=1e-9)
    recon = model.codes_ @ model.components_ + model.intercept_
    assert np.mean((digits - recon) ** 2) < 0.5 * np.mean((digits - digits.mean(0)) ** 2)
    # transform on the training data gives (near) the stored codes' objective
    assert model.score(digits) >= -model.objective_ - 1e-3 * model.objective_


def test_intercept_is_learned():
    rng = np.random.default_rng(0)
    X = rng.laplace(size=(300, 4)) @ random_dictionary(4, 6) + np.array([5.0, -3.0, 1.0, 0.0, 2.0, 7.0])
    with_b = SparseCoding(4, alpha=0.1, max_iter=200, tol=1e-8, random_state=0).fit(X)
    without_b = SparseCoding(4, alpha=0.1, fit_intercept=False, max_iter=200, tol=1e-8, random_state=0)
    with pytest.warns(ConvergenceWarning):
        without_b.set_params(max_iter=20).fit(X)
    assert with_b.objective_ < without_b.objective_
    assert np.all(without_b.intercept_ == 0.0)


def test_convergence_warning_when_max_iter_is_tiny(digits):
    with pytest.warns(ConvergenceWarning):
        model = SparseCoding(8, max_iter=1, random_state=0).fit(digits[:100])
    assert not model.converged_


def test_fit_returns_self_and_random_state_reproduces(digits):
    X = digits[:200]
    model = SparseCoding(8, max_iter=5, tol=1e-3, random_state=3)
    with pytest.warns(ConvergenceWarning):
        assert model.fit(X) is model
    with pytest.warns(ConvergenceWarning):
        again = SparseCoding(8, max_iter=5, tol=1e-3, random_state=3).fit(X)
    np.testing.assert_array_equal(model.components_, again.components_)
    with pytest.warns(ConvergenceWarning):
        other = SparseCoding(8, max_iter=5, tol=1e-3, random_state=4).fit(X)
    assert not np.allclose(model.components_, other.components_)


def test_bad_inputs_raise():
    with pytest.raises(DataError, match="2-D"):
        SparseCoding(4).fit(np.arange(10.0))
    with pytest.raises(DataError, match="NaN"):
        SparseCoding(2).fit(np.array([[1.0, np.nan], [0.0, 1.0], [1.0, 1.0]]))
    with pytest.raises(ConfigError, match="solver"):
        SparseCoding(2, solver="lars").fit(np.eye(3))
    with pytest.raises(DataError, match="features"):
        fista(np.eye(3), np.eye(2), 1.0)
