"""The estimators of varinf.objectives against closed forms on a linear-Gaussian model.

Factor analysis (varinf.models.LinearGaussian) has exact log p(x), exact posterior and a
closed-form ELBO for any diagonal-Gaussian q, so every Monte Carlo estimator can be checked
in value and gradient against truth, with tolerances set by the estimator's own standard error.
"""

import math

import pytest
import torch
from scipy import integrate, stats
from torch import distributions as D

from varinf.models import LinearGaussian
from varinf.objectives import (elbo_and_log_marginal, iwae_bound, kl_to_prior, log_marginal_estimate,
                               log_weights, logmeanexp, score_function_surrogate, sgvb_a, sgvb_b)
from varinf.families import Posterior



@pytest.fixture(autouse=True)
def float64():
    """Exact comparisons need double precision; restored after each test so other modules are unaffected."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def diag_q(mean, log_std):
    return D.Independent(D.Normal(mean, log_std.exp()), 1)


@pytest.fixture
def setup():
    g = torch.Generator().manual_seed(0)
    model = LinearGaussian.random(data_dim=5, latent_dim=3, generator=g)
    x = model.marginal().sample((4,))                                  # (B=4, D=5)
    mean = torch.randn(4, 3, generator=g)
    log_std = 0.3 * torch.randn(4, 3, generator=g) - 0.5
    return model, x, mean, log_std, g


def ppca_with_diagonal_posterior(g):
    """PPCA with orthogonal columns and isotropic noise: the exact posterior is diagonal."""
    q_mat, _ = torch.linalg.qr(torch.randn(6, 3, generator=g))
    w = q_mat * torch.tensor([2.0, 1.0, 0.5])
    return LinearGaussian(w, torch.randn(6, generator=g), torch.full((6,), 0.3))


def test_elbo_never_exceeds_log_marginal_for_arbitrary_q(setup):
    model, x, _, _, g = setup
    log_px = model.log_marginal(x)
    for _ in range(50):
        mean = 3 * torch.randn(4, 3, generator=g)
        log_std = torch.randn(4, 3, generator=g)
        assert torch.all(model.exact_elbo(x, mean, log_std) <= log_px + 1e-10)


def test_closed_form_elbo_matches_log_p_minus_kl(setup):
    """ELBO = log p(x) − KL(q ‖ p(z|x)) (Goodfellow et al. 2016 Eq. 19.1), with KL from torch.distributions."""
    model, x, mean, log_std, _ = setup
    post = model.posterior(x)
    q_full = D.MultivariateNormal(mean, scale_tril=torch.diag_embed(log_std.exp()))
    expected = model.log_marginal(x) - D.kl_divergence(q_full, post)
    torch.testing.assert_close(model.exact_elbo(x, mean, log_std), expected, rtol=1e-10, atol=1e-10)


def test_elbo_equals_log_marginal_at_exact_posterior():
    g = torch.Generator().manual_seed(1)
    model = ppca_with_diagonal_posterior(g)
    x = model.marginal().sample((7,))
    post = model.posterior(x)
    var = torch.diagonal(post.covariance_matrix, dim1=-2, dim2=-1)
    assert torch.allclose(post.covariance_matrix, torch.diag_embed(var), atol=1e-12)   # really diagonal
    q = diag_q(post.mean, 0.5 * var.log())
    # log p(x, z) − log q(z|x) = log p(x) for every z when q is the posterior: zero-variance estimator.
    lw = log_weights(model, q, x, 64, g)
    torch.testing.assert_close(lw, model.log_marginal(x).expand_as(lw), rtol=1e-9, atol=1e-9)
    # estimator B is not zero-variance there (log p(x|z) varies with z) but unbiased: within 4 s.e. of log p(x),
    # s.e. = sd(log p(x|z)) / √S of the same draws (the KL term is closed-form)
    n = 20000
    se = model.log_likelihood(x, Posterior.of(q).draw(n, g.manual_seed(3))).std(0) / math.sqrt(n)          # ≈ 0.01 nats
    err = sgvb_b(model, q, x, n, g.manual_seed(3)) - model.log_marginal(x)                     # (7,)
    assert (err.abs() <= 4 * se).all() and err.sum().abs() <= 4 * se.pow(2).sum().sqrt()   # and pooled
    # and with a full-covariance posterior on a generic model (rsample path)
    model2 = LinearGaussian.random(5, 3, generator=g)
    x2 = model2.marginal().sample((3,))
    lw2 = log_weights(model2, model2.posterior(x2), x2, 32)
    torch.testing.assert_close(lw2, model2.log_marginal(x2).expand_as(lw2), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("estimator", [sgvb_a, sgvb_b])
def test_sgvb_estimators_are_unbiased_for_the_elbo(setup, estimator):
    model, x, mean, log_std, g = setup
    draws = torch.stack([estimator(model, diag_q(mean, log_std), x, 10, g) for _ in range(400)])  # (R, B)
    se = draws.std(0) / math.sqrt(draws.shape[0])
    err = (draws.mean(0) - model.exact_elbo(x, mean, log_std)).abs()
    assert torch.all(err < 4 * se + 1e-9), (err, se)


def _grads(fn, params):
    for p in params:
        p.grad = None
    fn().sum().backward()
    return torch.cat([p.grad.flatten() for p in params])


@pytest.mark.parametrize("estimator", [sgvb_a, sgvb_b, score_function_surrogate])
def test_gradients_match_closed_form(setup, estimator):
    """∇ of each estimator, averaged over draws, equals ∇ of the closed-form ELBO (q and model parameters)."""
    model, x, mean0, log_std0, g = setup
    mean, log_std = mean0.clone().requires_grad_(), log_std0.clone().requires_grad_()
    params = [mean, log_std, model.weight, model.bias, model.log_noise]
    exact = _grads(lambda: model.exact_elbo(x, mean, log_std), params)
    reps, samples = (300, 20) if estimator is not score_function_surrogate else (400, 200)
    draws = torch.stack([_grads(lambda: estimator(model, diag_q(mean, log_std), x, samples, g), params)
                         for _ in range(reps)])
    se = draws.std(0) / math.sqrt(reps)
    z = (draws.mean(0) - exact).abs() / (se + 1e-12)
    # ~90 coordinates: allow the largest |z| to reach 4.5 (p ≈ 6e-4 per test under the null)
    assert z.max() < 4.5, (z.max(), exact, draws.mean(0))


def test_score_function_value_is_the_elbo_estimate_and_baseline_keeps_it_unbiased(setup):
    model, x, mean0, log_std0, g = setup
    q = diag_q(mean0, log_std0)
    state = g.get_state()
    surrogate = score_function_surrogate(model, q, x, 8, g)
    g.set_state(state)
    z = torch.randn(8, *mean0.shape, generator=g) * log_std0.exp() + mean0
    direct = (model.log_joint(x, z) - q.log_prob(z)).mean(0)
    torch.testing.assert_close(surrogate, direct)
    # a baseline changes the variance, not the mean, of the gradient
    mean, log_std = mean0.clone().requires_grad_(), log_std0.clone().requires_grad_()
    exact = _grads(lambda: model.exact_elbo(x, mean, log_std), [mean, log_std])
    baseline = model.exact_elbo(x, mean0, log_std0)          # a good constant baseline per datapoint
    draws = torch.stack([_grads(lambda: score_function_surrogate(model, diag_q(mean, log_std), x, 20, g,
                                                                 baseline=baseline), [mean, log_std])
                         for _ in range(400)])
    no_base = torch.stack([_grads(lambda: score_function_surrogate(model, diag_q(mean, log_std), x, 20, g),
                                  [mean, log_std]) for _ in range(400)])
    se = draws.std(0) / math.sqrt(400)
    assert ((draws.mean(0) - exact).abs() / se).max() < 4.5
    assert draws.var(0).sum() < no_base.var(0).sum()


def test_importance_weighted_bound_rises_with_k_towards_log_marginal(setup):
    model, x, _, _, g = setup
    q = diag_q(torch.zeros(4, 3), torch.zeros(4, 3))                  # the prior as proposal: a loose q
    log_px = model.log_marginal(x)
    means = [torch.stack([iwae_bound(model, q, x, k, g) for _ in range(300)]).mean(0) for k in (1, 10, 100, 1000)]
    for lo, hi in zip(means[:-1], means[1:]):
        assert torch.all(hi > lo)
    assert torch.all(means[-1] <= log_px + 0.02)
    assert (log_px - means[-1]).abs().max() < (log_px - means[0]).abs().min()
    torch.testing.assert_close(iwae_bound(model, q, x, 1, g.manual_seed(3)),
                               sgvb_a(model, q, x, 1, g.manual_seed(3)))


def test_log_marginal_estimate_converges_and_chunking_keeps_the_answer(setup):
    model, x, mean, log_std, g = setup
    post = model.posterior(x)
    var = torch.diagonal(post.covariance_matrix, dim1=-2, dim2=-1)
    q = diag_q(post.mean, 0.5 * var.log() + 0.2)                      # a slightly broad proposal
    log_px = model.log_marginal(x)
    k = 5000
    one_chunk = log_marginal_estimate(model, q, x, k, chunk_size=k, generator=g.manual_seed(21))
    many_chunks = log_marginal_estimate(model, q, x, k, chunk_size=37, generator=g.manual_seed(22))
    # exactly log (1/k) Σ w of the same draws: a slip in the normalisation (1/(k ± 1): 2e-4 nats) shows
    lw = log_weights(model, q, x, k, g.manual_seed(21))                               # (k, B)
    torch.testing.assert_close(one_chunk, torch.logsumexp(lw, 0) - math.log(k), rtol=0, atol=1e-12)
    g.manual_seed(22)
    chunks = torch.cat([log_weights(model, q, x, min(37, k - i), g) for i in range(0, k, 37)])   # (k, B)
    torch.testing.assert_close(many_chunks, torch.logsumexp(chunks, 0) - math.log(k), rtol=0, atol=1e-12)
    # and within 4 of its own standard errors of the exact log p(x): s.e. ≈ sd(w) / (√k mean(w)) (delta method)
    for weights, estimate in ((lw, one_chunk), (chunks, many_chunks)):
        r = (weights - weights.max(0).values).exp()
        se = r.std(0) / (r.mean(0) * math.sqrt(k))                                      # ≈ 0.014 nats here
        assert ((estimate - log_px).abs() <= 4 * se).all()
    n = 20000
    elbo, lpx = elbo_and_log_marginal(model, q, x, n, chunk_size=999, generator=g.manual_seed(23))
    se = log_weights(model, q, x, n, g.manual_seed(23)).std(0) / math.sqrt(n)           # ≈ 0.018 nats
    assert ((elbo - model.exact_elbo(x, post.mean, 0.5 * var.log() + 0.2)).abs() <= 4 * se).all()
    assert torch.all(lpx >= elbo)


def test_kl_closed_form_and_monte_carlo_fallback():
    g = torch.Generator().manual_seed(5)
    q = diag_q(torch.tensor([[0.3, -1.0]]), torch.tensor([[-0.2, 0.1]]))
    prior = diag_q(torch.zeros(2), torch.zeros(2))
    closed = kl_to_prior(q, prior)
    mc = kl_to_prior(D.Independent(D.Normal(q.base_dist.loc, q.base_dist.scale), 1),
                     D.Independent(D.StudentT(1e6 * torch.ones(2)), 1), 200000, g)   # no registered rule
    torch.testing.assert_close(mc, closed, rtol=0, atol=0.01)
    # 1-D Normal vs Student-t(3) by quadrature
    qn, pt = D.Normal(torch.tensor([0.5]), torch.tensor([0.7])), D.StudentT(torch.tensor([3.0]))
    with pytest.raises(NotImplementedError):
        D.kl_divergence(qn, pt)
    ref = integrate.quad(lambda t: stats.norm.pdf(t, 0.5, 0.7) * (stats.norm.logpdf(t, 0.5, 0.7)
                                                                   - stats.t.logpdf(t, 3)), -20, 20)[0]
    est = kl_to_prior(D.Independent(qn, 1), D.Independent(pt, 1), 400000, g)
    assert abs(est.item() - ref) < 0.005


def test_logmeanexp_is_stable():
    a = torch.tensor([[1000.0, 1000.0], [1000.0, -1000.0]])
    torch.testing.assert_close(logmeanexp(a, 0), torch.tensor([1000.0, 1000.0 - math.log(2)]))


def test_gaussian_log_q_from_the_noise_equals_the_generic_log_prob_in_value_and_gradient():
    """DiagonalGaussian.draw_with_log_prob (log q from ε, what log_weights uses) against torch.distributions."""
    from varinf.families import GAUSSIAN

    g = torch.Generator().manual_seed(0)
    mu = torch.randn(6, 4, generator=g).requires_grad_()
    log_std = (0.5 * torch.randn(6, 4, generator=g)).requires_grad_()
    h, log_q = Posterior.of(GAUSSIAN.dist(mu, log_std)).draw_with_log_prob(5, torch.Generator().manual_seed(1))  # (5, 6, 4), (5, 6)
    h_ref = GAUSSIAN.draw((mu, log_std), 5, torch.Generator().manual_seed(1))
    truth = D.Independent(D.Normal(mu, log_std.exp()), 1).log_prob(h_ref)                      # generic form
    assert torch.equal(h, h_ref)
    assert torch.allclose(log_q, truth, rtol=1e-12, atol=1e-12)
    w = torch.randn(5, 6, generator=g)                                                          # any test function
    ours = torch.autograd.grad((w * log_q).sum(), (mu, log_std), allow_unused=True)
    generic = torch.autograd.grad((w * truth).sum(), (mu, log_std))
    assert ours[0] is None and generic[0].abs().max() < 1e-12      # log q(μ + σε) does not depend on μ
    assert torch.allclose(ours[1], generic[1], rtol=1e-10, atol=1e-12)


def test_vae_log_joint_is_likelihood_plus_the_prior_distribution_log_prob():
    from varinf.models import VAE, VAEConfig

    torch.manual_seed(0)
    model = VAE(VAEConfig(data_dim=12, latent_dim=3, hidden=(8,)))
    x = (torch.rand(4, 12) < 0.5).double()
    z = torch.randn(7, 4, 3, requires_grad=True)
    ours = model.log_joint(x, z)
    truth = model.log_likelihood(x, z) + model.prior().log_prob(z)
    assert torch.allclose(ours, truth, rtol=1e-12, atol=1e-12)
    g1, = torch.autograd.grad(ours.sum(), z)
    g2, = torch.autograd.grad(truth.sum(), z)
    assert torch.allclose(g1, g2, rtol=1e-12, atol=1e-12)


def test_chunk_shares_of_n_processes_sum_to_the_single_process_summaries_exactly(setup):
    """The k split of a distributed evaluation: each share draws every chunk, evaluates its own."""
    from varinf.objectives import chunk_summaries, combine_chunks

    model, x, mean, log_std, _ = setup
    q = diag_q(mean, log_std)
    whole = chunk_summaries(model, q, x, 1000, 70, torch.Generator().manual_seed(3))              # (15, 2, B)
    for n in (2, 3, 16):                                                  # 16 > 15 chunks: one share is empty
        shares = [chunk_summaries(model, q, x, 1000, 70, torch.Generator().manual_seed(3), (r, n)) for r in range(n)]
        assert torch.equal(sum(shares), whole)
        assert all(torch.equal(s[r::n], whole[r::n]) for r, s in enumerate(shares))
    elbo, lpx = combine_chunks(whole, 1000)
    ref = elbo_and_log_marginal(model, q, x, 1000, 70, torch.Generator().manual_seed(3))
    assert torch.equal(elbo, ref[0]) and torch.equal(lpx, ref[1])


def test_posterior_of_a_torch_distribution_is_the_one_conversion():
    """Posterior.of: a Posterior is itself; an (Independent) Normal/Bernoulli its family and parameters,
    with the caller's own object kept for dist() and log_prob; the estimators give the same numbers on both."""
    from varinf.families import BERNOULLI, GAUSSIAN, TorchDistribution
    from varinf.models import SBN, SBNConfig

    mu, log_std = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    q = diag_q(mu, log_std)
    p = Posterior.of(q)
    assert p.family is GAUSSIAN and p.dist() is q and Posterior.of(p) is p
    assert torch.equal(p.params[0], mu) and torch.equal(p.params[1], log_std.exp().log())
    assert p.batch_shape == (4,) and p.dtype == torch.float64
    torch.testing.assert_close(p.entropy(), q.entropy(), rtol=1e-12, atol=1e-12)
    assert torch.equal(p.mean(), mu) and p.detach().params[1].requires_grad is False
    torch.manual_seed(0)
    model = SBN(SBNConfig(data_dim=6, latent_dim=3))
    x = torch.bernoulli(torch.full((4, 6), 0.5), generator=torch.Generator().manual_seed(0))
    logits = torch.randn(4, 3)
    a = sgvb_a(model, BERNOULLI.dist(logits), x, 7, torch.Generator().manual_seed(2))
    b = sgvb_a(model, Posterior(BERNOULLI, (logits,)), x, 7, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    other = Posterior.of(D.MultivariateNormal(mu, scale_tril=torch.diag_embed(log_std.exp())))
    assert isinstance(other.family, TorchDistribution) and other.batch_shape == (4,)
    with pytest.raises(TypeError, match="explicit generator"):
        other.draw(2, torch.Generator())


def test_kl_to_the_standard_normal_prior_is_the_general_closed_form_to_the_bit():
    """The VAE's prior is a StandardNormal: the KL takes kl_to_standard, which must equal the general
    Gaussian KL with μ₂ = 0, log σ₂ = 0 bit for bit, values and gradients (training numbers unchanged),
    and torch's own KL to float rounding."""
    from varinf.families import GAUSSIAN, StandardNormal
    from varinf.models import VAE, VAEConfig

    g = torch.Generator().manual_seed(0)
    mu = (3 * torch.randn(50, 7, generator=g)).requires_grad_()
    log_std = torch.randn(50, 7, generator=g).requires_grad_()
    q = Posterior(GAUSSIAN, (mu, log_std))
    prior = StandardNormal(torch.full((7,), 5.0))                   # the shape of its argument, never the values
    assert torch.equal(prior.mean, torch.zeros(7)) and torch.equal(prior.stddev, torch.ones(7))
    p = Posterior.of(prior)
    assert p.standard and p.family is GAUSSIAN and p.dist() is prior
    fast = kl_to_prior(q, prior)                                                     # takes kl_to_standard
    general = GAUSSIAN.kl((mu, log_std), (torch.zeros(7), torch.zeros(7)))
    assert torch.equal(fast, general)
    w = torch.randn(50, generator=g)
    assert all(torch.equal(a, b) for a, b in zip(torch.autograd.grad((w * fast).sum(), (mu, log_std)),
                                                 torch.autograd.grad((w * general).sum(), (mu, log_std))))
    torch.testing.assert_close(fast, D.kl_divergence(GAUSSIAN.dist(mu, log_std), prior))
    # a plain Normal(0, 1) prior is not marked standard: the general form, same numbers
    plain = D.Independent(D.Normal(torch.zeros(7), torch.ones(7)), 1)
    assert not Posterior.of(plain).standard and torch.equal(kl_to_prior(q, plain), general)
    expanded = prior.expand((50,))
    assert isinstance(expanded, StandardNormal) and expanded.batch_shape == (50,)
    assert torch.equal(kl_to_prior(q, expanded), general)
    # the model makes its prior once per device and dtype
    model = VAE(VAEConfig(data_dim=12, latent_dim=3, hidden=(8,)))
    model.float()
    assert model.prior() is model.prior() and model.prior().mean.dtype == torch.float32
    model.double()
    assert model.prior().mean.dtype == torch.float64 and model.prior() is model.prior()


@pytest.mark.parametrize("num", [1, 3])
def test_the_gaussian_draw_is_mu_plus_sigma_eps_to_the_bit_in_value_and_gradient(num):
    """h = μ + σ ⊙ ε (Kingma & Welling 2014 Eq. 10, one fused addcmul) on the stream's noise: the draw takes
    μ, σ as (1, B, K) so that the backward pass sums over draws only when S > 1; values and gradients must be
    those of (B, K) parameters broadcast against the noise, bit for bit, for one draw and for several."""
    from varinf.families import GAUSSIAN

    g = torch.Generator().manual_seed(4)
    mu = torch.randn(6, 5, generator=g).requires_grad_()
    log_std = torch.randn(6, 5, generator=g).requires_grad_()
    h, eps = GAUSSIAN.draw_with_noise((mu, log_std), num, torch.Generator().manual_seed(9))
    assert torch.equal(eps, torch.randn(num, 6, 5, generator=torch.Generator().manual_seed(9)))  # (S, B, K)
    plain = torch.addcmul(mu, log_std.exp(), eps)                     # (B, K) broadcast against (S, B, K)
    assert torch.equal(h, plain)
    w = torch.randn(num, 6, 5, generator=g)
    assert all(torch.equal(a, b) for a, b in zip(torch.autograd.grad((w * h).sum(), (mu, log_std)),
                                                 torch.autograd.grad((w * plain).sum(), (mu, log_std))))
