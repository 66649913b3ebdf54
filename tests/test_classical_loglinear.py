"""Bayesian log-linear model (varinf.classical.loglinear): Eikema & Aziz 2020, against a posterior on a grid."""

import numpy as np
import pytest
import torch

from varinf.classical.loglinear import BayesianLogLinear
from varinf.errors import ConfigError, DataError


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 1))
    y = (rng.random(40) < 1 / (1 + np.exp(-1.5 * x[:, 0]))).astype(int)
    return x, y


def grid_posterior(x, y, prior_std):
    """Two classes, one feature, no intercept: weights (w0, w1) on a 2-D grid."""
    g = np.linspace(-5, 5, 301)
    w0, w1 = np.meshgrid(g, g, indexing="ij")
    logits = np.stack([w0[..., None] * x[:, 0], w1[..., None] * x[:, 0]], -1)      # (G, G, N, 2)
    ll = (logits[..., 1] * y + logits[..., 0] * (1 - y) - np.logaddexp(logits[..., 0], logits[..., 1])).sum(-1)
    lp = ll - 0.5 * (w0 ** 2 + w1 ** 2) / prior_std ** 2
    p = np.exp(lp - lp.max())
    p /= p.sum()
    w = np.stack([w0, w1], -1).reshape(-1, 2)
    mean = p.reshape(-1) @ w
    cov = (w - mean).T @ (p.reshape(-1, 1) * (w - mean))
    return mean, cov


def test_full_rank_matches_grid_posterior(data):
    x, y = data
    mean, cov = grid_posterior(x, y, 1.0)
    m = BayesianLogLinear(family="full_rank", fit_intercept=False, n_iter=1500, lr=0.03, num_samples=16).fit(x, y)
    np.testing.assert_allclose(m.mean_.reshape(-1).numpy(), mean, atol=0.08)
    np.testing.assert_allclose(m.cov_.numpy(), cov, atol=0.08)
    # strongly positively correlated: only w1 - w0 is informed by the data, w0 + w1 keeps the prior
    assert m.cov_[0, 1] > 0.3


@pytest.mark.parametrize("estimator", ["reparam", "rao-blackwell+cv"])
def test_mean_field_means_and_accuracy(data, estimator):
    x, y = data
    mean, cov = grid_posterior(x, y, 1.0)
    m = BayesianLogLinear(family="mean_field", estimator=estimator, fit_intercept=False, n_iter=1500,
                          lr=0.03, num_samples=16).fit(x, y)
    np.testing.assert_allclose(m.mean_.reshape(-1).numpy(), mean, atol=0.15)
    # mean field under-estimates the marginal variances (KL(q||p) is mode-seeking)
    assert (m.cov_.diagonal().numpy() < np.diag(cov) + 0.02).all()
    assert m.elbo_trace_[-1][1] > m.elbo_trace_[0][1]
    assert (m.predict(x) == y).mean() > 0.6
    np.testing.assert_allclose(m.predict_proba(x).sum(1), 1.0)


def test_bad_input(data):
    x, y = data
    with pytest.raises(DataError, match="y must have shape"):
        BayesianLogLinear().fit(x, y[:-1])
    with pytest.raises(DataError, match="2 classes"):
        BayesianLogLinear().fit(x, np.zeros(40))
    with pytest.raises(ConfigError, match="family"):
        BayesianLogLinear(family="diag").fit(x, y)
    with pytest.raises(ConfigError, match="reparameterisation"):
        BayesianLogLinear(family="full_rank", estimator="score").fit(x, y)
    with pytest.raises(DataError, match="non-finite"):
        BayesianLogLinear().fit(np.full((3, 1), np.nan), [0, 1, 0])
