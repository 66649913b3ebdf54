"""Factorial HMM inference: fully factorised mean field (CAVI), restarts and deterministic annealing for both
mean-field variants, the amortised inference network (Eikema & Aziz 2020; Ghahramani & Jordan 1997)."""

import itertools
import warnings

import numpy as np
import pytest
import torch

from varinf.classical import (FactorialHMM, FHMMInferenceNetwork, FHMMParams, exact_posterior,
                              factorised_elbo_terms, factorised_mean_field_posterior, fit_fhmm_inference_network,
                              mean_field_posterior)
from varinf.classical.fhmm import (_torch_model, expected_complete_loglik, factorised_site_logits,
                                   sample_fhmm)
from varinf.errors import ConfigError, ConvergenceWarning, DataError


pytestmark = pytest.mark.usefixtures("one_blas_thread")

POSTERIORS = [mean_field_posterior, factorised_mean_field_posterior]


def log_joint_all_paths(params, Y):
    """log p(Y, S) for every path S (all (L^M)^T of them), by direct summation of (G&J 2, 3)."""
    m, l_, d = params.shape
    T = len(Y)
    paths = np.array(list(itertools.product(itertools.product(range(l_), repeat=m), repeat=T)))   # (P, T, M)
    chains = np.arange(m)
    lp = np.log(params.pi[chains, paths[:, 0]]).sum(-1)
    for t in range(1, T):
        lp += np.log(params.A[chains, paths[:, t - 1], paths[:, t]]).sum(-1)
    for t in range(T):
        mu = params.W[chains, :, paths[:, t]].sum(1)                                               # (P, D)
        lp += -0.5 * np.sum(np.log(2 * np.pi * params.C) + (Y[t] - mu) ** 2 / params.C, axis=-1)
    return paths, lp


def brute_force_kl(params, Y, gamma):
    """KL(q || p(S|Y)) = sum_S q(S) [log q(S) - log p(S|Y)] for q(S) = prod_t prod_m gamma^m_t(s^m_t)."""
    paths, lp = log_joint_all_paths(params, Y)
    log_z = np.logaddexp.reduce(lp)
    T, m, _ = gamma.shape
    log_q = np.log(gamma[np.arange(T)[None, :, None], np.arange(m)[None, None, :], paths]).sum((1, 2))
    return float(np.sum(np.exp(log_q) * (log_q - (lp - log_z)))), float(log_z)


def test_factorised_bound_matches_expected_complete_loglik():
    params = FHMMParams.random(n_chains=3, n_states=3, n_outputs=4, seed=11)
    _, Y = sample_fhmm(params, T=25, seed=12)
    gamma = np.random.default_rng(0).dirichlet(np.ones(3), size=(25, 3))
    terms = factorised_elbo_terms(params, Y, np.log(gamma))
    stats = {"gamma": gamma, "xi": np.einsum("tmk,tml->mkl", gamma[:-1], gamma[1:]),
             "Es": gamma.reshape(25, 9)}
    ess = stats["Es"].T @ stats["Es"]
    for c in range(3):
        ess[3 * c:3 * c + 3, 3 * c:3 * c + 3] = np.diag(gamma[:, c].sum(0))
    stats["Ess"] = ess
    ref = sum(expected_complete_loglik(params, Y, stats).values()) - np.sum(gamma * np.log(gamma))
    assert abs(float(sum(terms.values())) - ref) < 1e-9 * abs(ref)


@pytest.mark.parametrize("m, l_, T", [(1, 2, 5), (2, 2, 4), (2, 3, 3)])
def test_factorised_bound_is_log_evidence_minus_brute_force_kl(m, l_, T):
    params = FHMMParams.random(n_chains=m, n_states=l_, n_outputs=2, seed=m + l_)
    _, Y = sample_fhmm(params, T=T, seed=T)
    random_q = np.random.default_rng(1).dirichlet(np.ones(l_), size=(T, m))
    cavi = factorised_mean_field_posterior(params, Y, n_iter=200, tol=0.0)
    for gamma in (random_q, cavi["gamma"]):
        bound = float(sum(factorised_elbo_terms(params, Y, np.log(gamma)).values()))
        kl, log_z = brute_force_kl(params, Y, gamma)
        assert kl >= 0
        assert abs(log_z - bound - kl) < 1e-8
    assert cavi["bound"] <= exact_posterior(params, Y)["log_likelihood"] + 1e-10
    assert abs(cavi["bound"] - float(sum(factorised_elbo_terms(params, Y, np.log(cavi["gamma"])).values()))) < 1e-9


def test_factorised_not_exact_for_one_chain():
    """Unlike the structured q, the fully factorised q also factorises over time: KL > 0 even for M = 1."""
    params = FHMMParams.random(n_chains=1, n_states=2, n_outputs=2, seed=3, scale=0.4, stickiness=0.9)
    _, Y = sample_fhmm(params, T=5, seed=4)
    cavi = factorised_mean_field_posterior(params, Y, n_iter=200, tol=0.0, n_init=3)
    kl, log_z = brute_force_kl(params, Y, cavi["gamma"])
    assert kl > 1e-3
    assert abs(mean_field_posterior(params, Y, n_iter=2)["bound"] - log_z) < 1e-9


def test_factorised_cavi_reaches_brute_force_optimum():
    """M = 1, L = 2, T = 2: q is (q_1, q_2) in [0, 1]^2; the best CAVI bound equals the maximum over a fine grid."""
    params = FHMMParams.random(n_chains=1, n_states=2, n_outputs=2, seed=5, stickiness=0.6)
    _, Y = sample_fhmm(params, T=2, seed=6)
    grid = np.linspace(1e-6, 1 - 1e-6, 401)
    a, b = np.meshgrid(grid, grid, indexing="ij")
    gamma = np.stack([np.stack([a, 1 - a], -1), np.stack([b, 1 - b], -1)], axis=2)[..., None, :]   # (G, G, T, 1, L)
    values = sum(factorised_elbo_terms(params, np.broadcast_to(Y, a.shape + Y.shape).copy(), np.log(gamma)).values())
    cavi = factorised_mean_field_posterior(params, Y, n_iter=500, tol=0.0, n_init=5)
    assert cavi["bound"] >= float(values.max()) - 1e-10
    assert cavi["bound"] - float(values.max()) < 1e-4                       # grid spacing 2.5e-3


def test_factorised_cavi_monotone_and_stationary():
    params = FHMMParams.random(n_chains=3, n_states=3, n_outputs=3, seed=7)
    _, Y = sample_fhmm(params, T=40, seed=8)
    cavi = factorised_mean_field_posterior(params, Y, n_iter=300, tol=0.0)
    trace = np.array(cavi["bound_trace"])
    assert np.all(np.diff(trace) >= -1e-10 * np.abs(trace[:-1]))
    assert trace[-1] > trace[0]
    assert cavi["bound"] <= exact_posterior(params, Y)["log_likelihood"]
    # at convergence every q(s^m_t) is the softmax of its own (FF.2) logits
    p, q = _torch_model(params), torch.as_tensor(cavi["gamma"])
    for c in range(3):
        fixed = torch.softmax(factorised_site_logits(p, torch.as_tensor(Y), q.clone(), c), -1)
        np.testing.assert_allclose(fixed.numpy(), cavi["gamma"][:, c], atol=1e-6)


@pytest.mark.parametrize("posterior", POSTERIORS)
def test_restarts_keep_the_best_single_start(posterior):
    params = FHMMParams.random(n_chains=3, n_states=3, n_outputs=3, seed=9)
    _, Y = sample_fhmm(params, T=50, seed=10)
    best = posterior(params, Y, n_iter=30, seed=20, n_init=4)
    singles = [posterior(params, Y, n_iter=30, seed=s)["bound"] for s in range(20, 24)]
    np.testing.assert_allclose(best["restart_bounds"], singles, rtol=0, atol=1e-9)
    assert best["restart_seeds"] == [20, 21, 22, 23]
    assert abs(best["bound"] - max(singles)) < 1e-9
    assert all(best["bound"] >= s for s in singles)


@pytest.mark.parametrize("posterior", POSTERIORS)
def test_annealing_and_restarts_improve_three_chains(posterior):
    """Strongly overlapping emissions, M = 3: one random start lands in poor modes; annealing (one start) and
    annealing + 3 restarts lower the mean KL over 4 sequences, and every bound stays <= log p(Y)."""
    params = FHMMParams.random(n_chains=3, n_states=3, n_outputs=5, seed=3)
    kl_plain, kl_anneal, kl_both = [], [], []
    for s in range(4):
        _, Y = sample_fhmm(params, T=100, seed=100 + s)
        log_p = exact_posterior(params, Y)["log_likelihood"]
        plain = posterior(params, Y, n_iter=100, seed=s)
        anneal = posterior(params, Y, n_iter=100, seed=s, betas=np.linspace(0.05, 1, 20))
        both = posterior(params, Y, n_iter=100, seed=s, betas=np.linspace(0.05, 1, 20), n_init=3)
        assert np.all(np.diff(anneal["bound_trace"]) >= -1e-10 * np.abs(anneal["bound_trace"][-1]))
        assert max(plain["bound"], anneal["bound"], both["bound"]) <= log_p
        assert both["bound"] >= anneal["bound"]
        kl_plain.append(log_p - plain["bound"])
        kl_anneal.append(log_p - anneal["bound"])
        kl_both.append(log_p - both["bound"])
    assert np.mean(kl_anneal) < 0.5 * np.mean(kl_plain)
    assert np.mean(kl_both) <= np.mean(kl_anneal)


@pytest.mark.parametrize("n_init", [1, 2])
def test_em_with_factorised_estep_never_drops(n_init):
    params = FHMMParams.random(n_chains=2, n_states=2, n_outputs=3, seed=6, scale=2.0)
    _, Y = sample_fhmm(params, T=60, seed=7)
    fh = FactorialHMM(2, 2, inference="factorised", n_init=n_init, n_mf_iter=20, tol=1e-7, max_iter=30,
                      random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fh.fit(Y)
    values = np.array([v for _, v in fh.bound_trace_])
    assert np.all(np.diff(values) >= -1e-8 * np.abs(values[:-1]))
    assert fh.log_likelihood(Y) / len(Y) >= fh.lower_bound_


def test_inference_network_bound_training_and_gap():
    params = FHMMParams.random(n_chains=2, n_states=2, n_outputs=3, seed=2, scale=1.5)
    train = np.stack([sample_fhmm(params, 30, seed=200 + i)[1] for i in range(24)])
    test = np.stack([sample_fhmm(params, 30, seed=300 + i)[1] for i in range(6)])
    net, trace = fit_fhmm_inference_network(params, train, n_iter=200, lr=1e-2, seed=0)
    assert isinstance(net, FHMMInferenceNetwork)
    assert trace[-1][1] > trace[0][1] + 2.0 * train.shape[1]                 # training raises the mean bound
    with torch.no_grad():
        log_q = net(torch.as_tensor(test))                                    # (N, T, M, L)
    bound = sum(factorised_elbo_terms(params, test, log_q).values()).numpy()
    assert np.allclose(log_q.exp().sum(-1).numpy(), 1.0)
    for n in range(len(test)):
        log_p = exact_posterior(params, test[n])["log_likelihood"]
        refined = factorised_mean_field_posterior(params, test[n], init_gamma=log_q[n].exp().numpy())
        assert bound[n] <= log_p                                              # a lower bound on log p(Y)
        assert bound[n] <= refined["bound"] + 1e-9 <= log_p + 1e-9             # amortisation gap >= 0
    # the trained network is far better than an untrained one
    with torch.no_grad():
        untrained = FHMMInferenceNetwork(3, 2, 2)(torch.as_tensor(test))
    assert bound.mean() > float(sum(factorised_elbo_terms(params, test, untrained).values()).mean()) + 10


def test_bad_input():
    params = FHMMParams.random(2, 2, 3)
    Y = np.zeros((5, 3))
    for posterior in POSTERIORS:
        with pytest.raises(ConfigError, match="betas"):
            posterior(params, Y, betas=[0.5, 0.2])
        with pytest.raises(ConfigError, match="betas"):
            posterior(params, Y, betas=[0.0, 1.0])
        with pytest.raises(ConfigError, match="n_init"):
            posterior(params, Y, n_init=0)
        with pytest.raises(DataError, match="init_gamma"):
            posterior(params, Y, init_gamma=np.ones((5, 3, 2)))
    with pytest.raises(ConfigError, match="n_init"):
        FactorialHMM(inference="factorised", n_init=0).fit(np.random.default_rng(0).normal(size=(10, 2)))
    with pytest.raises(DataError, match=r"\(N, T, D\)"):
        fit_fhmm_inference_network(params, np.zeros((5, 3)))
    with pytest.raises(DataError, match=r"\(N, T, D\)"):
        fit_fhmm_inference_network(params, np.zeros((2, 5, 4)))
