"""Factorial HMM (varinf.classical.fhmm): Eikema & Aziz (2020); Ghahramani & Jordan (1997), Machine Learning 29."""

import itertools
import math
import warnings

import numpy as np
import pytest

from varinf.classical.fhmm import (FactorialHMM, FHMMParams, exact_posterior, mean_field_posterior,
                                   sample_fhmm)
from varinf.errors import ConfigError, ConvergenceWarning, DataError


pytestmark = pytest.mark.usefixtures("one_blas_thread")


def brute_force(params, Y):
    """log p(Y) and per-chain marginals by summing over all (L^M)^T state paths."""
    m, l_, d = params.shape
    T = len(Y)
    logps, paths = [], []
    for path in itertools.product(itertools.product(range(l_), repeat=m), repeat=T):
        s = np.array(path)                                                   # (T, M)
        lp = sum(math.log(params.pi[c, s[0, c]]) for c in range(m))
        lp += sum(math.log(params.A[c, s[t - 1, c], s[t, c]]) for t in range(1, T) for c in range(m))
        for t in range(T):
            mu = sum(params.W[c][:, s[t, c]] for c in range(m))
            lp += -0.5 * np.sum(np.log(2 * np.pi * params.C) + (Y[t] - mu) ** 2 / params.C)
        logps.append(lp)
        paths.append(s)
    logps = np.array(logps)
    logZ = np.logaddexp.reduce(logps)
    w = np.exp(logps - logZ)
    gamma = np.zeros((T, m, l_))
    for wi, s in zip(w, paths):
        for t in range(T):
            gamma[t, np.arange(m), s[t]] += wi
    return logZ, gamma


@pytest.fixture(scope="module")
def tiny():
    params = FHMMParams.random(n_chains=2, n_states=2, n_outputs=2, seed=0)
    _, Y = sample_fhmm(params, T=4, seed=1)
    return params, Y


def test_exact_estep_matches_brute_force(tiny):
    params, Y = tiny
    logZ, gamma = brute_force(params, Y)
    post = exact_posterior(params, Y)
    assert abs(post["log_likelihood"] - logZ) < 1e-9
    np.testing.assert_allclose(post["gamma"], gamma, atol=1e-10)
    assert post["entropy"] > 0


def test_mean_field_bound_below_loglik_and_monotone():
    params = FHMMParams.random(n_chains=3, n_states=2, n_outputs=3, seed=2)
    _, Y = sample_fhmm(params, T=30, seed=3)
    exact = exact_posterior(params, Y)
    mf = mean_field_posterior(params, Y, n_iter=30, tol=0.0)
    trace = np.array(mf["bound_trace"])
    assert np.all(np.diff(trace) >= -1e-9 * np.abs(trace[:-1]))
    assert mf["bound"] <= exact["log_likelihood"] + 1e-9
    assert abs(mf["bound"] - trace[-1]) < 1e-9
    # with one chain the structured mean field is exact
    p1 = FHMMParams.random(n_chains=1, n_states=3, n_outputs=2, seed=4)
    _, Y1 = sample_fhmm(p1, T=20, seed=5)
    assert abs(mean_field_posterior(p1, Y1, n_iter=2)["bound"] - exact_posterior(p1, Y1)["log_likelihood"]) < 1e-8


@pytest.mark.parametrize("inference", ["exact", "mean_field"])
def test_em_bound_never_drops(inference):
    params = FHMMParams.random(n_chains=2, n_states=3, n_outputs=3, seed=6, scale=2.0)
    _, Y = sample_fhmm(params, T=60, seed=7)
    fh = FactorialHMM(2, 3, inference=inference, tol=1e-7, max_iter=40, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fh.fit(Y)
    values = np.array([v for _, v in fh.bound_trace_])
    assert np.all(np.diff(values) >= -1e-8 * np.abs(values[:-1]))
    assert fh.log_likelihood(Y) / len(Y) >= fh.lower_bound_ - 1e-9
    if inference == "exact":       # after an exact E-step the bound is the log-likelihood
        assert abs(fh.posterior_["log_likelihood"] / len(Y) - fh.bound_trace_[-2][1]) < 1e-9


def test_bad_input():
    with pytest.raises(ConfigError, match="inference"):
        FactorialHMM(inference="gibbs").fit(np.zeros((5, 2)))
    with pytest.raises(DataError, match="non-finite"):
        FactorialHMM().fit(np.array([[0.0], [np.nan]]))
    with pytest.raises(ConfigError, match="joint states"):
        FactorialHMM(n_chains=13, n_states=2).fit(np.zeros((5, 2)))
    with pytest.raises(DataError, match="shapes"):
        FHMMParams(np.ones((2, 2)) / 2, np.ones((1, 2, 2)) / 2, np.zeros((2, 3, 2)), np.ones(3)).validate()
    params = FHMMParams.random(2, 2, 3)
    with pytest.raises(DataError, match="features"):
        exact_posterior(params, np.zeros((4, 2)))
    with pytest.raises(DataError, match="features"):
        mean_field_posterior(params, np.zeros((4, 5)))
