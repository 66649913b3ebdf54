"""Black-box VI gradient estimators (varinf.classical.bbvi): Patlan §III.

Every estimator is checked for unbiasedness against the exact ELBO gradient: the mean
of R independent estimates must lie within 5 standard errors of the truth, per coordinate.
"""

import math

import pytest
import torch

from varinf.classical.bbvi import (ESTIMATORS, GaussianMeanModel, MeanFieldBernoulli, MeanFieldNormal,
                                   elbo_estimate, estimator_gradient, fit_bbvi, score_function_gradient)
from varinf.enumeration import all_binary
from varinf.errors import ConfigError, DataError


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture
def conj():
    g = torch.Generator().manual_seed(0)
    x = 0.7 + torch.randn(8, 3, generator=g)
    model = GaussianMeanModel(x, prior_std=1.5, noise_std=1.0)
    params = torch.tensor([[0.2, -0.5], [-0.4, -1.0], [1.0, -0.2]])
    return model, params


def repeated(name, model, params, reps=1500, s=4, seed=1, **kw):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([estimator_gradient(name, model.log_joint, MeanFieldNormal(), params, s, g,
                                           log_joint_terms=model.log_joint_terms, **kw) for _ in range(reps)])


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_unbiased_on_conjugate_model(conj, name):
    model, params = conj
    grads = repeated(name, model, params)
    exact = model.exact_gradient(params)
    se = grads.std(0) / math.sqrt(grads.shape[0])
    z = ((grads.mean(0) - exact) / se).abs()
    assert z.max() < 5, f"{name}: max z-score {z.max():.2f}"


def test_rao_blackwell_and_control_variates_reduce_variance(conj):
    model, params = conj
    var = {name: repeated(name, model, params, reps=400).var(0).sum().item() for name in ESTIMATORS}
    assert var["rao-blackwell"] < var["score"] / 2
    assert var["score+cv"] < var["score"]
    assert var["rao-blackwell+cv"] < var["rao-blackwell"]
    assert var["reparam"] < var["score"]


def test_generic_rao_blackwell_without_terms_is_unbiased(conj):
    model, params = conj
    g = torch.Generator().manual_seed(3)
    grads = torch.stack([score_function_gradient(model.log_joint, MeanFieldNormal(), params, 4, g,
                                                 rao_blackwellize=True, control_variate=True)
                         for _ in range(1500)])
    se = grads.std(0) / math.sqrt(grads.shape[0])
    assert ((grads.mean(0) - model.exact_gradient(params)) / se).abs().max() < 5


def test_bernoulli_family_unbiased_against_enumeration():
    k = 4
    g = torch.Generator().manual_seed(0)
    J = torch.randn(k, k, generator=g)
    J = (J + J.T) / 2
    b = torch.randn(k, generator=g)

    def log_joint(z):                                            # an unnormalised Ising-like model
        return z @ b + ((z @ J) * z).sum(-1) / 2

    eta = torch.randn(k, 1, generator=g)
    states = all_binary(k, torch.float64)

    def exact_elbo(eta_):
        fam = MeanFieldBernoulli()
        log_q = fam.log_prob_components(eta_, states).sum(-1)
        return (log_q.exp() * (log_joint(states) - log_q)).sum()

    lam = eta.clone().requires_grad_(True)
    (exact,) = torch.autograd.grad(exact_elbo(lam), lam)
    for kw in (dict(), dict(rao_blackwellize=True, control_variate=True)):
        grads = torch.stack([score_function_gradient(log_joint, MeanFieldBernoulli(), eta, 4, g, **kw)
                             for _ in range(2000)])
        se = grads.std(0) / math.sqrt(grads.shape[0])
        assert ((grads.mean(0) - exact) / se).abs().max() < 5


def test_fit_reaches_exact_posterior(conj):
    model, params = conj
    g = torch.Generator().manual_seed(0)
    res = fit_bbvi(model.log_joint, MeanFieldNormal(), params, estimator="rao-blackwell+cv", n_iter=600,
                   lr=0.05, num_samples=8, generator=g, log_joint_terms=model.log_joint_terms,
                   elbo_fn=model.exact_elbo)
    mu, v = model.posterior()
    assert torch.allclose(res.params[:, 0], mu, atol=0.05)
    assert torch.allclose((2 * res.params[:, 1]).exp(), v, rtol=0.2)
    assert res.elbo_trace[-1][1] > res.elbo_trace[0][1]
    assert abs(res.elbo_trace[-1][1] - model.log_marginal().item()) < 0.05
    est = elbo_estimate(model.log_joint, MeanFieldNormal(), res.params, 20000, g)
    assert abs(est.item() - model.exact_elbo(res.params).item()) < 0.1


def test_bad_input():
    with pytest.raises(DataError, match="K, 2"):
        score_function_gradient(lambda z: z.sum(-1), MeanFieldNormal(), torch.zeros(3), 4)
    with pytest.raises(DataError, match="non-finite"):
        score_function_gradient(lambda z: z.sum(-1), MeanFieldNormal(), torch.full((3, 2), float("nan")), 4)
    with pytest.raises(ConfigError, match="reparameterisation"):
        estimator_gradient("reparam", lambda z: z.sum(-1), MeanFieldBernoulli(), torch.zeros(3, 1))
    with pytest.raises(ConfigError, match="not one of"):
        estimator_gradient("nope", lambda z: z.sum(-1), MeanFieldNormal(), torch.zeros(3, 2))
    with pytest.raises(ConfigError, match="num_samples"):
        score_function_gradient(lambda z: z.sum(-1), MeanFieldNormal(), torch.zeros(3, 2), 0)
    with pytest.raises(DataError, match="finite"):
        GaussianMeanModel(torch.tensor([[float("inf")]]))
