"""Tests that kill the surviving mutants of ``varinf.families``, ``varinf.infer`` and ``varinf.refinement``
(issue #20; docs/RESULTS.md §17)."""

import pytest
import torch
from torch import distributions as D

from test_deep_sbn import deep
from varinf.contract import log_joint
from varinf.errors import ConfigError
from varinf.families import Posterior
from varinf.infer import NVIL
from varinf.infer.wake_sleep import sleep_objective, wake_objective
from varinf.refinement import GaussianGradient


X = torch.tensor([[1, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 0], [0, 1, 0, 0, 1, 0]], dtype=torch.float64)


def test_a_layered_q_as_a_torch_distribution_has_batch_b_and_event_k():
    """The deep SBN's q(h|x) object: batch (B,), event (K = 3 + 2,), draws (S, B, K), its family's log q."""
    model = deep()
    logits = model.encode(X)[0]
    q = model.family.dist(logits)
    assert (q.batch_shape, q.event_shape) == (torch.Size([4]), torch.Size([5]))
    torch.manual_seed(1)
    h = q.sample((7,))
    assert h.shape == (7, 4, 5) and set(h.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(q.log_prob(h), model.family.log_prob((logits,), h), rtol=0, atol=0)


def test_the_sampled_entropy_term_is_per_datapoint():
    """−(1/S) Σ_s log q(h_s|x) for each of the B points, not one number for the batch."""
    model = deep()
    params = model.encode(X)
    h = model.family.draw(params, 6, torch.Generator().manual_seed(2))                 # (S, B, K)
    got = model.family.entropy_term(params, h)
    want = torch.stack([-model.family.log_prob(params, h)[:, b].mean() for b in range(4)])
    assert got.shape == (4,)
    torch.testing.assert_close(got, want, rtol=1e-15, atol=0)
    assert got.unique().numel() == 4


def test_wake_sleep_objectives_per_datapoint_and_from_the_given_generator():
    """The wake step's ELBO estimate is (1/S) Σ_s [log p(x, h_s) − log q(h_s|x)] per point (B,), from the
    draws its generator makes; the sleep step's dreams come from its generator, not torch's global one."""
    model = deep()
    lj_mean, elbo = wake_objective(model, X, 5, torch.Generator().manual_seed(3))
    params = model.encode(X)
    h = model.family.draw(params, 5, torch.Generator().manual_seed(3))                # the same draws
    want = (log_joint(model, X, h) - model.family.log_prob(params, h)).mean(0)
    assert elbo.shape == lj_mean.shape == (4,)
    torch.testing.assert_close(elbo, want.detach(), rtol=1e-14, atol=0)
    torch.manual_seed(10)
    a = sleep_objective(model, 8, torch.Generator().manual_seed(4))
    torch.manual_seed(11)
    b = sleep_objective(model, 8, torch.Generator().manual_seed(4))
    assert a.shape == (8,) and torch.equal(a, b)


def test_nvils_baseline_is_a_d_100_1_tanh_network():
    """NVIL's input-dependent baseline b_ψ(x): one tanh layer of 100 units (Mnih & Gregor 2014 §5)."""
    method = NVIL(deep(), data_dim=6, seed=0)
    shapes = [tuple(p.shape) for p in method.state.net.parameters()]
    assert shapes == [(100, 6), (100,), (1, 100), (1,)]


@pytest.mark.parametrize("steps", [True, 2.0, -1])
def test_refine_steps_must_be_an_integer_at_least_0(steps):
    """A bool, a float or a negative count of refinement steps is refused in one line naming the setting."""
    with pytest.raises(ConfigError, match=rf"^refine_steps must be an integer >= 0, got {steps!r}$"):
        GaussianGradient(steps, 0.1)
    assert GaussianGradient(0, 0.1).steps == 0


@pytest.mark.parametrize("make", [lambda p: D.Independent(D.Bernoulli(logits=p), 1),
                                  lambda p: D.Independent(D.Normal(p, p.exp()), 1)])
def test_a_posterior_made_from_a_torch_distribution_keeps_the_callers_object(make):
    """Posterior.of(q) of an (Independent) Bernoulli or Normal: its family's parameters, and ``dist()`` is the
    caller's own object (with its own log_prob), not a rebuilt one."""
    q = make(torch.tensor([[0.3, -1.2], [2.0, 0.1]], dtype=torch.float64))
    post = Posterior.of(q)
    assert post.dist() is q and post.batch_shape == (2,)
    h = q.sample((3,))
    torch.testing.assert_close(post.log_prob(h), q.log_prob(h), rtol=0, atol=0)


def test_a_layered_q_handed_in_as_a_torch_object_is_its_family_and_the_callers_object():
    """Posterior.of of a deep SBN's q object: the layered family with the layer-1 logits, ``dist()`` the caller's
    object, and the k-sample log weights those of the same q handed in as a Posterior (same draws)."""
    from varinf.objectives import log_weights
    model = deep()
    logits = model.encode(X)[0]
    q = model.family.dist(logits)
    post = Posterior.of(q)
    assert post.family is model.family and post.dist() is q and torch.equal(post.params[0], logits)
    got = log_weights(model, q, X, 5, torch.Generator().manual_seed(4))
    want = log_weights(model, Posterior(model.family, (logits,)), X, 5, torch.Generator().manual_seed(4))
    assert torch.equal(got, want)


def test_one_layer_uniforms_under_a_shard_are_the_rows_of_the_global_draw():
    """FactorialBernoulli.uniforms (ARM, DisARM, Gumbel on one layer) with a batch shard: the shard's rows of the
    draw for the whole batch, along the batch dimension (S, B, K)."""
    from varinf.families import BERNOULLI
    from varinf.streams import Shard, Stream
    logits = torch.zeros(10, 3)
    full = BERNOULLI.uniforms(logits, 4, torch.Generator().manual_seed(5))[0]                    # (4, 10, 3)
    mine = BERNOULLI.uniforms(logits[6:], 4, Stream(torch.Generator().manual_seed(5), Shard(6, 10, 10)))[0]
    assert mine.shape == (4, 4, 3) and torch.equal(mine, full[:, 6:])
