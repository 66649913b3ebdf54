"""varinf.refinement (Hjelm et al. 2015 Eqs. 3–5) against closed forms on a linear-Gaussian model.

On PPCA with orthogonal columns and isotropic noise the exact posterior p(z|x) is a diagonal
Gaussian, so the refinement's target is inside the variational family: gradient ascent from a
poor start must raise the *exact* bound (LinearGaussian.exact_elbo) and reach p(z|x).
"""

import math
from typing import NamedTuple

import pytest
import torch
from torch import distributions as D

from varinf.models import LinearGaussian
from gaussian_helpers import diag_gaussian, gaussian_bound, gaussian_entropy, gaussian_kl
from varinf.families import GAUSSIAN, Posterior
from varinf.refinement import AdamStep, GaussianGradient, GradientStep


# ---- refine(): the library's GaussianGradient refiner on a bare log_joint, with optional fixed noise --------
class Refined(NamedTuple):
    mu: torch.Tensor
    log_std: torch.Tensor
    trace: torch.Tensor | None


class _LogJoint:
    def __init__(self, fn):
        self.log_joint = fn


class _FixedNoiseGaussian(GaussianGradient):
    """GaussianGradient whose step t uses noise[t] (common random numbers across calls)."""

    def __init__(self, noise, **kw):
        super().__init__(**kw)
        self.noise, self.t = noise, 0

    def objective(self, model, q, x, generator):
        value = gaussian_bound(model.log_joint, x, *q.params, noise=self.noise[self.t])
        self.t += 1
        return value


def refine(log_joint, x, mu0, log_std0, *, steps, rate=1e-3, num_samples=1, generator=None, step_rule="sgd",
           return_trace=False, noise=None) -> Refined:
    """T steps of GaussianGradient.iterate from (μ₀, log σ₀); the trace is the bound of every z_t."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    rule_name = step_rule if isinstance(step_rule, str) else step_rule.name
    rule_rate = rate if isinstance(step_rule, str) else step_rule.rate
    kw = dict(steps=steps, rate=rule_rate, step_rule=rule_name, samples=num_samples)
    refiner = GaussianGradient(**kw) if noise is None else _FixedNoiseGaussian(noise, **kw)
    if not isinstance(step_rule, str):
        refiner.step_rule = step_rule
    trace, params = [], (mu0, log_std0)
    for t, q_t in enumerate(refiner.iterate(_LogJoint(log_joint), Posterior(GAUSSIAN, params), x, generator)):
        params = q_t.params
        if return_trace:
            with torch.no_grad():
                trace.append(gaussian_bound(log_joint, x, *params, num_samples, generator,
                                            None if noise is None else noise[t]))
    return Refined(params[0], params[1], torch.stack(trace) if return_trace else None)


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def ppca_with_diagonal_posterior(g):
    q_mat, _ = torch.linalg.qr(torch.randn(6, 3, generator=g))
    w = q_mat * torch.tensor([2.0, 1.0, 0.5])
    return LinearGaussian(w, torch.randn(6, generator=g), torch.full((6,), 0.3))


@pytest.fixture
def problem():
    g = torch.Generator().manual_seed(0)
    model = ppca_with_diagonal_posterior(g)
    x = model.marginal().sample((5,))
    mu0 = torch.randn(5, 3, generator=g)
    log_std0 = torch.full((5, 3), 0.5)              # too wide and in the wrong place
    return model, x, mu0, log_std0


def kl_to_posterior(model, x, mu, log_std):
    post = model.posterior(x)
    q = D.MultivariateNormal(mu, scale_tril=torch.diag_embed(log_std.exp()))
    return D.kl_divergence(q, post)                   # (B,)


def test_closed_form_entropy_matches_torch():
    mu, log_std = torch.randn(4, 3), torch.randn(4, 3)
    assert torch.allclose(gaussian_entropy(log_std), diag_gaussian(mu, log_std).entropy())


@pytest.mark.parametrize("rule", ["sgd", "adam"])
def test_refinement_raises_exact_bound_and_reaches_posterior(problem, rule):
    model, x, mu0, log_std0 = problem
    gen = torch.Generator().manual_seed(1)
    step = GradientStep(0.02) if rule == "sgd" else AdamStep(0.02)
    mu, log_std = mu0, log_std0
    exact = [model.exact_elbo(x, mu, log_std)]
    state = None
    # One step at a time, to read the exact bound at every z_t (the SGD rule is stateless; for Adam
    # run it whole below and check the end point only).
    if rule == "sgd":
        for _ in range(300):
            mu, log_std, _ = refine(model.log_joint, x, mu, log_std, steps=1, num_samples=64, generator=gen,
                                    step_rule=step)
            exact.append(model.exact_elbo(x, mu, log_std))
        exact = torch.stack(exact)                                    # (T+1, B)
        drops = (exact[:-1] - exact[1:]).clamp(min=0)
        # Never lowers the bound beyond step-size noise: the largest single-step drop is tiny
        # compared with the total rise, and the bound at the end is the best up to that noise.
        total_rise = exact[-1] - exact[0]
        assert (total_rise > 1.0).all()
        assert (drops.max(0).values < 0.02).all(), drops.max(0).values
        assert (exact[-1] > exact.max(0).values - 0.02).all()
    else:
        mu, log_std, _ = refine(model.log_joint, x, mu0, log_std0, steps=600, num_samples=64, generator=gen,
                                step_rule=step)
    kl = kl_to_posterior(model, x, mu, log_std)
    assert (kl < 0.02).all(), kl
    # and the exact bound equals log p(x) up to that KL
    assert torch.allclose(model.exact_elbo(x, mu, log_std), model.log_marginal(x), atol=0.02)


def test_trace_is_bound_at_each_step(problem):
    """The trace's entry t estimates the bound of z_t: with many samples it matches exact_elbo."""
    model, x, mu0, log_std0 = problem
    gen = torch.Generator().manual_seed(2)
    n = 4000
    r = refine(model.log_joint, x, mu0, log_std0, steps=3, rate=0.05, num_samples=n, generator=gen,
               return_trace=True)
    assert r.trace.shape == (4, 5)

    def stderr(mu, log_std):      # standard error of an n-sample estimate of E_q log p(x, h)
        h = mu + log_std.exp() * torch.randn(n, *mu.shape, generator=gen)
        return model.log_joint(x, h).std(0) / math.sqrt(n)

    with torch.no_grad():
        for t, (mu, ls) in ((0, (mu0, log_std0)), (-1, (r.mu, r.log_std))):
            err = (r.trace[t] - model.exact_elbo(x, mu, ls)).abs()
            assert (err < 4 * stderr(mu, ls)).all(), (t, err, stderr(mu, ls))


def test_gaussian_bound_gradient_is_exact_elbo_gradient(problem):
    """E_ε ∇_z of the per-step estimator = ∇_z of the closed-form bound (checked to a few standard errors)."""
    model, x, mu0, log_std0 = problem
    mu, ls = mu0.clone().requires_grad_(), log_std0.clone().requires_grad_()
    g_exact = torch.autograd.grad(model.exact_elbo(x, mu, ls).sum(), (mu, ls))
    gen = torch.Generator().manual_seed(3)
    draws = []
    for _ in range(400):
        draws.append(torch.cat([g.flatten() for g in torch.autograd.grad(
            gaussian_bound(model.log_joint, x, mu, ls, 4, gen).sum(), (mu, ls))]))
    draws = torch.stack(draws)
    mean, se = draws.mean(0), draws.std(0) / math.sqrt(draws.shape[0])
    target = torch.cat([g.flatten() for g in g_exact])
    assert ((mean - target).abs() <= 5 * se + 1e-9).all()


def test_closed_form_kl_against_monte_carlo():
    """Eq. 6's KL(q̃ ‖ q_φ) in closed form against (1/S) Σ log q̃(h) − log q_φ(h), h ~ q̃."""
    g = torch.Generator().manual_seed(4)
    mu_p, ls_p = torch.randn(3, 4, generator=g), 0.3 * torch.randn(3, 4, generator=g)
    mu_q, ls_q = torch.randn(3, 4, generator=g), 0.3 * torch.randn(3, 4, generator=g)
    closed = gaussian_kl(mu_p, ls_p, mu_q, ls_q)
    h = mu_p + ls_p.exp() * torch.randn(20000, 3, 4, generator=g)
    terms = diag_gaussian(mu_p, ls_p).log_prob(h) - diag_gaussian(mu_q, ls_q).log_prob(h)   # (S, B)
    mc, se = terms.mean(0), terms.std(0) / math.sqrt(terms.shape[0])
    assert ((closed - mc).abs() < 4 * se).all(), (closed, mc, se)
    assert (closed > 0).all()
    assert torch.allclose(gaussian_kl(mu_p, ls_p, mu_p, ls_p), torch.zeros(3))


@pytest.mark.parametrize("rule", ["sgd", "adam"])
def test_batch_equals_each_datapoint_alone(problem, rule):
    model, x, mu0, log_std0 = problem
    steps, n = 7, 3
    noise = torch.randn(steps + 1, n, 5, 3, generator=torch.Generator().manual_seed(5))
    batch = refine(model.log_joint, x, mu0, log_std0, steps=steps, rate=0.05, num_samples=n, step_rule=rule,
                   noise=noise, return_trace=True)
    for i in range(5):
        alone = refine(model.log_joint, x[i:i + 1], mu0[i:i + 1], log_std0[i:i + 1], steps=steps, rate=0.05,
                       num_samples=n, step_rule=rule, noise=noise[:, :, i:i + 1], return_trace=True)
        assert torch.allclose(batch.mu[i:i + 1], alone.mu, rtol=1e-10, atol=1e-12)
        assert torch.allclose(batch.log_std[i:i + 1], alone.log_std, rtol=1e-10, atol=1e-12)
        assert torch.allclose(batch.trace[:, i:i + 1], alone.trace, rtol=1e-10, atol=1e-12)


def test_model_gets_no_gradient_and_works_under_no_grad(problem):
    model, x, mu0, log_std0 = problem
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        r = refine(model.log_joint, x, mu0, log_std0, steps=5, rate=0.05, num_samples=2,
                   generator=torch.Generator().manual_seed(6))
    assert not r.mu.requires_grad and not r.log_std.requires_grad
    assert not torch.equal(r.mu, mu0)
    for p in model.parameters():
        assert p.grad is None
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_generator_makes_refinement_deterministic(problem):
    model, x, mu0, log_std0 = problem
    a = refine(model.log_joint, x, mu0, log_std0, steps=4, rate=0.05, num_samples=2,
               generator=torch.Generator().manual_seed(7))
    b = refine(model.log_joint, x, mu0, log_std0, steps=4, rate=0.05, num_samples=2,
               generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.mu, b.mu) and torch.equal(a.log_std, b.log_std)


def test_zero_steps_is_identity_and_bad_input(problem):
    model, x, mu0, log_std0 = problem
    r = refine(model.log_joint, x, mu0, log_std0, steps=0)
    assert torch.equal(r.mu, mu0) and torch.equal(r.log_std, log_std0) and r.trace is None
    with pytest.raises(ValueError):
        refine(model.log_joint, x, mu0, log_std0, steps=-1)
    with pytest.raises(ValueError):
        refine(model.log_joint, x, mu0, log_std0, steps=1, step_rule="lbfgs")
