"""Binary latent-factor model (varinf.classical.latent_factor): Eikema & Aziz 2020, against exact enumeration."""

import numpy as np
import pytest
import torch

from varinf.classical.latent_factor import (BinaryLatentFactorModel, MeanFieldLatentFactor, fit_amortised,
                                            latent_factor_elbo)
from varinf.enumeration import all_binary
from varinf.errors import ConfigError, DataError


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def problem():
    model = BinaryLatentFactorModel.random(n_factors=6, n_outputs=10, noise_std=0.8, seed=0)
    _, x = model.sample(25, seed=1)
    return model, x.numpy()


def test_closed_form_elbo_matches_enumeration(problem):
    model, x = problem
    probs = torch.rand(x.shape[0], 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    closed = latent_factor_elbo(model, torch.as_tensor(x), probs)
    assert torch.allclose(closed, model.exact_elbo(x, probs), atol=1e-9)


def test_gap_equals_kl_by_explicit_sum(problem):
    model, x = problem
    cavi = MeanFieldLatentFactor(model, random_state=0).fit(x)
    assert cavi.converged_
    # KL(q || p) summed explicitly over the 2^K states, independently of the ELBO code.
    h = all_binary(6, torch.float64)[:, None, :]                           # (64, 1, 6)
    q = cavi.probs_
    log_q = (h * q.log() + (1 - h) * (1 - q).log()).sum(-1)                # (64, B)
    log_post = model.log_joint(torch.as_tensor(x), h.expand(-1, x.shape[0], -1))
    log_post = log_post - torch.logsumexp(log_post, 0)
    kl = (log_q.exp() * (log_q - log_post)).sum(0)
    gap = model.exact_log_marginal(x) - cavi.elbo_
    assert torch.allclose(gap, kl, atol=1e-8)
    assert torch.allclose(cavi.kl_to_posterior(x), kl, atol=1e-8)
    assert (kl > -1e-10).all()
    assert abs(cavi.lower_bound_ - float(cavi.elbo_.sum())) < 1e-8


def test_cavi_never_drops_factor_by_factor(problem):
    model, x = problem
    cavi = MeanFieldLatentFactor(model, random_state=3, tol=0.0, max_iter=15)
    with pytest.warns(Warning):
        cavi.fit(x)
    values = np.array([v for _, v in cavi.bound_trace_])
    assert np.all(np.diff(values) >= -1e-9 * np.abs(values[:-1]))
    assert cavi.bound_trace_[0][0] == "q(z_0)"


def test_amortised_bound_below_cavi_and_log_marginal(problem):
    model, x = problem
    cavi = MeanFieldLatentFactor(model, random_state=0).fit(x)
    enc, trace = fit_amortised(model, x, n_iter=300, hidden=32)
    amort = latent_factor_elbo(model, torch.as_tensor(x), enc(torch.as_tensor(x))).detach()
    assert trace[-1][1] > trace[0][1]
    assert (amort <= model.exact_log_marginal(x) + 1e-9).all()
    assert float(amort.mean()) < float(cavi.elbo_.mean())              # the amortisation gap is positive


def test_bad_input(problem):
    model, x = problem
    with pytest.raises(DataError, match="features"):
        MeanFieldLatentFactor(model).fit(x[:, :5])
    with pytest.raises(DataError, match="non-finite"):
        MeanFieldLatentFactor(model).fit(np.full((2, 10), np.nan))
    with pytest.raises(ConfigError, match="init"):
        MeanFieldLatentFactor(model, init="zeros").fit(x)
    with pytest.raises(DataError, match="prior_probs"):
        BinaryLatentFactorModel(np.ones((2, 3)), prior_probs=[0.0, 0.5])
    with pytest.raises(DataError, match="b must"):
        BinaryLatentFactorModel(np.ones((2, 3)), b=np.zeros(2))
