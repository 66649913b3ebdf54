"""EM for the Gaussian mixture (varinf.classical.GaussianMixture): Goodfellow et al. 2016 §19.2."""

import numpy as np
import pytest
from sklearn import mixture as skm

from varinf.classical import GaussianMixture
from varinf.classical import _gaussian
from varinf.classical.datasets import make_gaussian_mixture
from varinf.errors import ConfigError, ConvergenceWarning, DataError


pytestmark = pytest.mark.usefixtures("one_blas_thread")


def make_data(n=600, d=3, k=3, sep=1.2, seed=0):
    return make_gaussian_mixture(n, d, k, sep, seed)[0]


def initial_parameters(X, k, covariance_type, seed=0):
    """Weights/means/precisions from a random soft assignment (shared by both libraries)."""
    rng = np.random.default_rng(seed)
    resp = rng.dirichlet(np.ones(k), size=X.shape[0])
    nk = resp.sum(0)
    means = resp.T @ X / nk[:, None]
    if covariance_type == "full":
        covs = np.stack([(resp[:, j, None] * (X - means[j])).T @ (X - means[j]) / nk[j] for j in range(k)])
        return nk / nk.sum(), means, np.linalg.inv(covs)
    var = np.stack([(resp[:, j, None] * (X - means[j]) ** 2).sum(0) / nk[j] for j in range(k)])
    return nk / nk.sum(), means, 1.0 / var


def rel(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


def assert_monotone(trace, rtol=1e-9):
    values = np.array([v for _, v in trace])
    drops = values[:-1] - values[1:]
    assert np.all(drops <= rtol * np.abs(values[:-1])), f"bound dropped by {drops.max():.3g}"


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_bound_never_drops_across_e_and_m_steps(covariance_type):
    X = make_data(sep=0.8)
    w, m, p = initial_parameters(X, 4, covariance_type)
    gm = GaussianMixture(4, covariance_type=covariance_type, tol=1e-7, max_iter=2000,
                         weights_init=w, means_init=m, precisions_init=p).fit(X)
    assert gm.n_iter_ > 10
    assert [name for name, _ in gm.bound_trace_[:4]] == ["E", "M", "E", "M"]
    assert_monotone(gm.bound_trace_)
    # the M-step must actually raise the bound above the log-likelihood of the E-step
    gains = [b - a for (_, a), (_, b) in zip(gm.bound_trace_[0::2], gm.bound_trace_[1::2])]
    assert gains[0] > 1e-5


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_bound_equals_log_likelihood_after_each_e_step(covariance_type):
    X = make_data()
    w, m, p = initial_parameters(X, 3, covariance_type)
    kw = dict(covariance_type=covariance_type, tol=0.0, weights_init=w, means_init=m, precisions_init=p)
    with pytest.warns(ConvergenceWarning):
        full = GaussianMixture(3, max_iter=6, **kw).fit(X)
    for t in range(1, 6):
        with pytest.warns(ConvergenceWarning):
            partial = GaussianMixture(3, max_iter=t, **kw).fit(X)
        # lower_bounds_[t] is the bound after the E-step of sweep t+1, made with the
        # parameters left by sweep t: it must be their log-likelihood (KL = 0, Eq. 19.1)
        assert full.lower_bounds_[t] == pytest.approx(partial.score(X), rel=1e-12, abs=0)
        assert dict(full.bound_trace_[2 * t: 2 * t + 1])["E"] == full.lower_bounds_[t]


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_matches_sklearn_from_same_initial_parameters(covariance_type):
    X = make_data(sep=0.9, seed=1)
    w, m, p = initial_parameters(X, 3, covariance_type, seed=1)
    kw = dict(covariance_type=covariance_type, tol=1e-6, max_iter=500, weights_init=w, means_init=m,
              precisions_init=p)
    ours = GaussianMixture(3, **kw).fit(X)
    ref = skm.GaussianMixture(3, **kw).fit(X)
    assert ours.n_iter_ == ref.n_iter_ and ours.n_iter_ > 10
    assert ours.converged_ and ref.converged_
    assert ours.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-6)
    assert ours.score(X) == pytest.approx(ref.score(X), rel=1e-6)
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert rel(getattr(ours, name), getattr(ref, name)) < 1e-6, name
    np.testing.assert_allclose(ours.lower_bounds_, ref.lower_bounds_, rtol=1e-6)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-6)
    np.testing.assert_allclose(ours.score_samples(X), ref.score_samples(X), rtol=1e-6)


@pytest.mark.parametrize("init_params", ["kmeans", "random", "random_from_data", "k-means++"])
def test_same_random_state_gives_sklearn_initialisation(init_params):
    X = make_data(n=300, seed=2)
    ours = GaussianMixture(3, init_params=init_params, random_state=5, tol=1e-6, max_iter=500).fit(X)
    ref = skm.GaussianMixture(3, init_params=init_params, random_state=5, tol=1e-6, max_iter=500).fit(X)
    assert ours.n_iter_ == ref.n_iter_
    assert rel(ours.means_, ref.means_) < 1e-6
    assert ours.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-6)


def test_far_offset_data_gives_shifted_solution():
    """The one-GEMM quadratic form is evaluated on centred data: an offset of 1e4 changes nothing."""
    X = make_data(seed=3)
    w, m, p = initial_parameters(X, 3, "full", seed=3)
    a = GaussianMixture(3, tol=1e-8, max_iter=500, weights_init=w, means_init=m, precisions_init=p).fit(X)
    b = GaussianMixture(3, tol=1e-8, max_iter=500, weights_init=w, means_init=m + 1e4,
                        precisions_init=p).fit(X + 1e4)
    assert a.n_iter_ == b.n_iter_
    assert rel(b.means_ - 1e4, a.means_) < 1e-6
    assert rel(b.covariances_, a.covariances_) < 1e-6
    assert b.lower_bound_ == pytest.approx(a.lower_bound_, rel=1e-9)


def test_blockwise_features_match_cached(monkeypatch):
    X = make_data(n=1000, seed=4)
    w, m, p = initial_parameters(X, 3, "full", seed=4)
    kw = dict(tol=1e-8, max_iter=500, weights_init=w, means_init=m, precisions_init=p)
    cached = GaussianMixture(3, **kw).fit(X)
    monkeypatch.setattr(_gaussian, "_CACHE_BYTES", 0)
    monkeypatch.setattr(_gaussian, "_CHUNK_COLS", 97)
    blockwise = GaussianMixture(3, **kw).fit(X)
    assert blockwise.n_iter_ == cached.n_iter_
    assert rel(blockwise.means_, cached.means_) < 1e-10
    assert blockwise.lower_bound_ == pytest.approx(cached.lower_bound_, rel=1e-12)
    np.testing.assert_allclose(blockwise.predict_proba(X), cached.predict_proba(X), atol=1e-12)


def test_bound_terms_are_labelled_and_sum_to_bound():
    X = make_data()
    gm = GaussianMixture(3, random_state=0).fit(X)
    assert set(gm.bound_terms_) == {"E_q[log p(z)]", "E_q[log p(x|z)]", "H[q(z)]"}
    assert sum(gm.bound_terms_.values()) / X.shape[0] == pytest.approx(gm.lower_bound_, rel=1e-12)
    assert gm.bound_terms_["H[q(z)]"] >= 0


def test_convergence_warning_when_max_iter_is_tiny():
    X = make_data()
    with pytest.warns(ConvergenceWarning):
        gm = GaussianMixture(3, max_iter=1, random_state=0).fit(X)
    assert not gm.converged_ and gm.n_iter_ == 1


def test_fit_returns_self_and_random_state_reproduces():
    X = make_data()
    gm = GaussianMixture(3, init_params="random", random_state=7)
    assert gm.fit(X) is gm
    again = GaussianMixture(3, init_params="random", random_state=7).fit(X)
    other = GaussianMixture(3, init_params="random", random_state=8, max_iter=2, tol=0.0)
    with pytest.warns(ConvergenceWarning):
        other.fit(X)
    np.testing.assert_array_equal(gm.means_, again.means_)
    assert gm.lower_bounds_ == again.lower_bounds_
    assert not np.allclose(np.sort(other.means_, 0), np.sort(gm.means_, 0))


def test_sample_recovers_parameters_roughly():
    X = make_data()
    gm = GaussianMixture(3, random_state=0).fit(X)
    Xs, labels = gm.sample(20000)
    assert Xs.shape == (20000, 3) and labels.shape == (20000,)
    np.testing.assert_allclose(Xs.mean(0), gm.weights_ @ gm.means_, atol=0.05)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.array([1.0, 2.0, 3.0, 4.0]), "2-D"),
        (np.array([[0.0, 1.0], [np.nan, 1.0], [2.0, 2.0], [1.0, 0.0]]), "NaN"),
        (np.array([[0.0, 1.0], [np.inf, 1.0], [2.0, 2.0], [1.0, 0.0]]), "inf"),
        (np.array([["a", "b"], ["c", "d"], ["e", "f"]]), "numeric"),
        (np.zeros((2, 2)), "n_samples=2"),
    ],
)
def test_bad_data_raises_data_error(bad, message):
    with pytest.raises(DataError, match=message):
        GaussianMixture(3).fit(bad)


def test_bad_settings_raise_config_error():
    X = make_data()
    with pytest.raises(ConfigError, match="covariance_type"):
        GaussianMixture(3, covariance_type="tied").fit(X)
    with pytest.raises(ConfigError, match="n_components"):
        GaussianMixture(0).fit(X)
    with pytest.raises(ConfigError, match="tol"):
        GaussianMixture(3, tol=-1.0).fit(X)
    with pytest.raises(DataError, match="means_init"):
        GaussianMixture(3, means_init=np.zeros((2, 3))).fit(X)
    gm = GaussianMixture(3, random_state=0).fit(X)
    with pytest.raises(DataError, match="features"):
        gm.score(X[:, :2])


def sklearn_twin(gm):
    """scikit-learn's GaussianMixture carrying varinf's fitted parameters (nothing refitted)."""
    sk = skm.GaussianMixture(gm.n_components, covariance_type=gm.covariance_type, random_state=gm.random_state)
    sk.weights_, sk.means_, sk.covariances_ = gm.weights_, gm.means_, gm.covariances_
    sk.precisions_, sk.precisions_cholesky_ = gm.precisions_, gm.precisions_cholesky_
    sk.n_features_in_ = gm.n_features_in_
    return sk


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_sklearn_methods_match_sklearn_on_the_same_parameters(covariance_type):
    """score_samples, score, predict(_proba), aic, bic and sample give scikit-learn's numbers on varinf's fit."""
    X = make_data()
    X_new = make_data(n=200, seed=1)
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    sk = sklearn_twin(gm)
    for data in (X, X_new):
        np.testing.assert_allclose(gm.score_samples(data), sk.score_samples(data), rtol=1e-13, atol=0)
        np.testing.assert_allclose(gm.predict_proba(data), sk.predict_proba(data), rtol=0, atol=1e-13)
        np.testing.assert_array_equal(gm.predict(data), sk.predict(data))
        for name in ("score", "aic", "bic"):
            ours, theirs = getattr(gm, name)(data), getattr(sk, name)(data)
            assert ours == pytest.approx(theirs, rel=1e-13, abs=0), name
    assert gm._n_parameters() == sk._n_parameters() == {"full": 3 * 6 + 3 * 3 + 2, "diag": 3 * 3 + 3 * 3 + 2}[
        covariance_type]
    Xs, ys = gm.sample(500)
    Xs_sk, ys_sk = sk.sample(500)
    np.testing.assert_array_equal(ys, ys_sk)
    np.testing.assert_allclose(Xs, Xs_sk, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(gm.sample(5)[0], gm.sample(5)[0])       # an int random_state: same draws


def test_fit_predict_is_fit_then_predict_and_matches_sklearn_fit():
    X = make_data()
    w, m, p = initial_parameters(X, 3, "full")
    kw = dict(weights_init=w, means_init=m, precisions_init=p, tol=1e-6, max_iter=500)
    labels = GaussianMixture(3, **kw).fit_predict(X)
    np.testing.assert_array_equal(labels, GaussianMixture(3, **kw).fit(X).predict(X))
    np.testing.assert_array_equal(labels, skm.GaussianMixture(3, **kw).fit_predict(X))


def test_convergence_warning_obeys_the_scikit_learn_filter():
    """The filter scikit-learn users write for sklearn's ConvergenceWarning silences (or raises) varinf's."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning

    X = make_data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=SklearnConvergenceWarning)
        GaussianMixture(3, max_iter=1, random_state=0).fit(X)
    assert caught == []
    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=SklearnConvergenceWarning)
        with pytest.raises(ConvergenceWarning, match="did not converge in max_iter=1"):
            GaussianMixture(3, max_iter=1, random_state=0).fit(X)
