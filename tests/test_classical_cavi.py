"""Mean-field CAVI (varinf.classical.MeanFieldCAVI, BayesianGaussianMixture): Patlan §II."""

import math

import numpy as np
import pytest
from scipy import stats
from scipy.special import gammaln
from sklearn import mixture as skm

from varinf.classical import BayesianGaussianMixture, MeanFieldCAVI, UnivariateGaussianCAVI
from varinf.classical.datasets import make_gaussian_mixture
from varinf.errors import ConfigError, ConvergenceWarning, DataError


pytestmark = pytest.mark.usefixtures("one_blas_thread")


def make_data(n=600, d=3, k=3, sep=1.2, seed=0):
    return make_gaussian_mixture(n, d, k, sep, seed)[0]


def rel(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


def assert_monotone(trace, rtol=1e-9):
    values = np.array([v for _, v in trace])
    drops = values[:-1] - values[1:]
    assert np.all(drops <= rtol * np.abs(values[:-1])), f"bound dropped by {drops.max():.3g}"


def sklearn_constant(X, k, alpha0, beta0, nu0, cov0):
    """ELBO - sklearn's bound, derived independently (Bishop 10.70-10.77 at the optimal q(theta))."""
    n, d = X.shape
    logdet_W0 = -np.linalg.slogdet(cov0)[1]
    log_B0 = (-0.5 * nu0 * logdet_W0 - 0.5 * nu0 * d * math.log(2) - 0.25 * d * (d - 1) * math.log(math.pi)
              - sum(gammaln(0.5 * (nu0 + 1 - i)) for i in range(1, d + 1)))
    log_C0 = gammaln(k * alpha0) - k * gammaln(alpha0)
    return (log_C0 + k * log_B0 + 0.5 * k * d * math.log(beta0) - 0.5 * n * d * math.log(2 * math.pi)
            + 0.25 * k * d * (d - 1) * math.log(math.pi))


@pytest.mark.parametrize("reg_covar", [0.0, 1e-6])
def test_elbo_never_drops_factor_by_factor(reg_covar):
    X = make_data(sep=0.7)
    bgm = BayesianGaussianMixture(5, reg_covar=reg_covar, tol=1e-8, max_iter=2000, random_state=0,
                                  init_params="random").fit(X)
    assert bgm.n_iter_ > 10
    assert [name for name, _ in bgm.bound_trace_[:3]] == ["q(z)", "q(pi)", "q(mu,Lambda)"]
    assert_monotone(bgm.bound_trace_)


@pytest.mark.parametrize("reg_covar", [0.0, 1e-6])
def test_matches_sklearn_bound_and_responsibilities(reg_covar):
    X = make_data(sep=0.9, seed=1)
    kw = dict(n_components=4, reg_covar=reg_covar, tol=1e-6, max_iter=1000, random_state=3,
              init_params="kmeans")
    ours = BayesianGaussianMixture(**kw).fit(X)
    ref = skm.BayesianGaussianMixture(weight_concentration_prior_type="dirichlet_distribution",
                                      covariance_type="full", **kw).fit(X)
    assert ours.n_iter_ == ref.n_iter_ and ours.n_iter_ > 10
    assert ours.sklearn_lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-6)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-6)
    for name in ("weights_", "weight_concentration_", "mean_precision_", "means_", "degrees_of_freedom_",
                 "covariances_", "precisions_", "precisions_cholesky_"):
        assert rel(getattr(ours, name), getattr(ref, name)) < 1e-6, name
    assert ours.score(X) == pytest.approx(ref.score(X), rel=1e-6)
    # the same priors
    assert ours.weight_concentration_prior_ == ref.weight_concentration_prior_
    np.testing.assert_allclose(ours.covariance_prior_, ref.covariance_prior_)
    np.testing.assert_allclose(ours.mean_prior_, ref.mean_prior_)
    if reg_covar == 0.0:
        # full ELBO = scikit-learn's bound + a constant of the data size and the priors
        const = sklearn_constant(X, 4, 1 / 4, 1.0, 3.0, np.cov(X.T))
        assert ours.lower_bound_ == pytest.approx(ref.lower_bound_ + const, rel=1e-9)


def monte_carlo_elbo(X, r, q, k, S=4000, seed=0):
    """E_q[log p(X, Z, theta) - log q(Z) - log q(theta)], the expectation over Z exact, over theta by sampling."""
    rng = np.random.default_rng(seed)
    n, d = X.shape
    alpha0, beta0, nu0 = q.weight_concentration_prior_, q.mean_precision_prior_, q.degrees_of_freedom_prior_
    W0 = np.linalg.inv(q.covariance_prior_)
    m0 = q.mean_prior_
    pis = rng.dirichlet(q.weight_concentration_, size=S)
    total = (r.sum(0) * np.log(pis)).sum(1)  # E_z[log p(z | pi)]
    total += stats.dirichlet(np.full(k, alpha0)).logpdf(pis.T) - stats.dirichlet(q.weight_concentration_).logpdf(pis.T)
    for j in range(k):
        Wk = q.precisions_[j] / q.degrees_of_freedom_[j]
        wish_q = stats.wishart(df=q.degrees_of_freedom_[j], scale=Wk)
        lam = wish_q.rvs(size=S, random_state=rng)
        cov_mu = np.linalg.inv(q.mean_precision_[j] * lam)
        mu = q.means_[j] + np.einsum("sij,sj->si", np.linalg.cholesky(cov_mu), rng.normal(size=(S, d)))
        total += stats.wishart(df=nu0, scale=W0).logpdf(lam.transpose(1, 2, 0)) - wish_q.logpdf(lam.transpose(1, 2, 0))
        for sign, centre, prec in ((-1.0, q.means_[j], q.mean_precision_[j]), (1.0, m0, beta0)):
            diff = mu - centre
            quad = np.einsum("si,sij,sj->s", diff, prec * lam, diff)
            total += sign * 0.5 * (np.linalg.slogdet(prec * lam)[1] - d * math.log(2 * math.pi) - quad)
        diff = X[None] - mu[:, None]  # (S, n, d)
        quad = np.einsum("sni,sij,snj->sn", diff, lam, diff)
        loglik = 0.5 * (np.linalg.slogdet(lam)[1][:, None] - d * math.log(2 * math.pi) - quad)
        total += (r[:, j] * loglik).sum(1)  # E_z[log p(x | z, mu, Lambda)]
    total += -(r * np.log(r)).sum()  # H[q(Z)]
    return total.mean(), total.std() / math.sqrt(S)


def test_full_elbo_matches_monte_carlo_estimate():
    """The seven labelled terms against E_q[log p(X, Z, theta) - log q(Z, theta)], theta sampled from q."""
    X = make_data(n=40, d=2, k=2, seed=5)
    k = 3
    kw = dict(tol=0.0, random_state=0, reg_covar=0.0, weight_concentration_prior=0.7, mean_precision_prior=0.5,
              degrees_of_freedom_prior=3.5, covariance_prior=2.0 * np.eye(2), mean_prior=[1.0, -1.0])
    with pytest.warns(ConvergenceWarning):
        prev = BayesianGaussianMixture(k, max_iter=2, **kw).fit(X)
    with pytest.warns(ConvergenceWarning):
        bgm = BayesianGaussianMixture(k, max_iter=3, **kw).fit(X)
    # sweep 3 starts with q(z) <- the responsibilities under the q(theta) left by sweep 2 (= prev)
    r = prev.predict_proba(X)
    name, after_qz = bgm.bound_trace_[6]
    assert name == "q(z)"
    mc, se = monte_carlo_elbo(X, r, prev, k)  # state (new q(z), old q(theta)): a genuine estimate
    assert se > 1e-3
    assert abs(after_qz - mc) < 4 * se, (after_qz, mc, se)
    # after the q(theta) updates, q(theta) is the exact optimum for q(z): the integrand is constant
    mc, se = monte_carlo_elbo(X, r, bgm, k)
    assert se < 1e-9
    assert bgm.lower_bound_ == pytest.approx(mc, rel=1e-10)
    assert set(bgm.bound_terms_) == {"E[log p(X|Z,mu,Lambda)]", "E[log p(Z|pi)]", "E[log p(pi)]",
                                     "E[log p(mu,Lambda)]", "-E[log q(Z)]", "-E[log q(pi)]",
                                     "-E[log q(mu,Lambda)]"}
    assert sum(bgm.bound_terms_.values()) == pytest.approx(bgm.lower_bound_, rel=1e-12)


def test_switches_off_superfluous_components():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    X = np.concatenate([c + rng.normal(size=(300, 2)) for c in centres])
    bgm = BayesianGaussianMixture(8, weight_concentration_prior=1e-3, tol=1e-6, max_iter=2000,
                                  random_state=0).fit(X)
    assert bgm.converged_
    active = bgm.weights_ > 1e-2
    assert active.sum() == 3, bgm.weights_
    assert np.all(bgm.weights_[~active] < 1e-2)
    found = bgm.means_[active]
    dist = np.linalg.norm(found[:, None] - centres[None], axis=2)
    assert np.all(dist.min(axis=0) < 0.3)
    # EM with the same number of components keeps them all
    from varinf.classical import GaussianMixture

    assert (GaussianMixture(8, random_state=0).fit(X).weights_ > 1e-2).sum() > 3


def test_generic_loop_on_a_second_model_univariate_gaussian():
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 0.5, size=(50, 1))
    model = UnivariateGaussianCAVI(mu0=0.0, lambda0=0.5, a0=2.0, b0=1.0)
    assert isinstance(model, MeanFieldCAVI)
    model.fit(x)
    assert model.converged_
    assert_monotone(model.bound_trace_)
    evidence = model.log_evidence(x)
    assert model.lower_bound_ <= evidence
    assert model.lower_bound_ > evidence - 0.1  # mean field is nearly exact for n = 50
    # the mean of q(mu) is the exact posterior mean (Bishop 10.26)
    assert model.mean_mu_ == pytest.approx((0.5 * 0.0 + x.sum()) / (0.5 + 50), rel=1e-12)


def test_convergence_warning_when_max_iter_is_tiny():
    X = make_data()
    with pytest.warns(ConvergenceWarning):
        bgm = BayesianGaussianMixture(3, max_iter=1, random_state=0).fit(X)
    assert not bgm.converged_


def test_fit_returns_self_and_random_state_reproduces():
    X = make_data()
    bgm = BayesianGaussianMixture(3, init_params="random", random_state=4, max_iter=500)
    assert bgm.fit(X) is bgm
    again = BayesianGaussianMixture(3, init_params="random", random_state=4, max_iter=500).fit(X)
    np.testing.assert_array_equal(bgm.means_, again.means_)
    assert bgm.lower_bounds_ == again.lower_bounds_


def test_resp_init_is_used():
    X = make_data()
    resp = np.random.default_rng(0).dirichlet(np.ones(3), size=X.shape[0])
    with pytest.warns(ConvergenceWarning):
        a = BayesianGaussianMixture(3, resp_init=resp, max_iter=1, tol=0.0).fit(X)
    with pytest.warns(ConvergenceWarning):
        b = BayesianGaussianMixture(3, resp_init=resp[:, ::-1], max_iter=1, tol=0.0).fit(X)
    np.testing.assert_allclose(a.means_, b.means_[::-1], rtol=1e-12)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.arange(10.0), "2-D"),
        (np.array([[0.0, 1.0], [np.nan, 1.0], [2.0, 2.0], [1.0, 0.0]]), "NaN"),
        (np.zeros((2, 2)), "n_samples=2"),
    ],
)
def test_bad_data_raises_data_error(bad, message):
    with pytest.raises(DataError, match=message):
        BayesianGaussianMixture(3).fit(bad)


def test_bad_settings_raise():
    X = make_data()
    with pytest.raises(ConfigError, match="degrees_of_freedom_prior"):
        BayesianGaussianMixture(3, degrees_of_freedom_prior=1.0).fit(X)
    with pytest.raises(ConfigError, match="weight_concentration_prior"):
        BayesianGaussianMixture(3, weight_concentration_prior=0.0).fit(X)
    with pytest.raises(DataError, match="resp_init"):
        BayesianGaussianMixture(3, resp_init=np.ones((5, 3))).fit(X)
