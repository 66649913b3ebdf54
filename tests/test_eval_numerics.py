"""The faster evaluation path gives the same numbers: Bernoulli log-likelihood and chunking (benchmarks/bench_eval.py)."""

from __future__ import annotations

import pytest
import torch
from torch import distributions as D

from varinf.evaluate import _chunk, evaluate_model
from varinf.models import VAE, VAEConfig
from varinf.likelihoods import bernoulli_log_likelihood


@pytest.mark.parametrize("shape, x_shape", [((7, 5, 30), (5, 30)), ((5, 30), (5, 30)), ((2, 3, 5, 30), (5, 30)),
                                            ((4, 5, 30), (1, 30)), ((1, 5, 30), (5, 30)), ((2, 5, 30), (5, 30)),
                                            ((3, 5, 30), (5, 30))])
def test_bernoulli_log_likelihood_equals_torch_distributions(shape, x_shape):
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(shape, generator=g, dtype=torch.float64) * 15).requires_grad_()   # up to |η| ~ 60
    x = (torch.rand(x_shape, generator=g, dtype=torch.float64) < 0.4).double()
    truth = D.Bernoulli(logits=logits, validate_args=False).log_prob(x).sum(-1)
    ours = bernoulli_log_likelihood(logits, x)
    assert ours.shape == truth.shape
    assert torch.allclose(ours, truth, rtol=1e-12, atol=1e-10)
    g_truth, = torch.autograd.grad(truth.sum(), logits)
    g_ours, = torch.autograd.grad(ours.sum(), logits)
    assert torch.allclose(g_ours, g_truth, rtol=1e-12, atol=1e-12)


def test_bernoulli_data_term_backward_is_autograds_einsum_gradient_and_differentiable_again():
    """The batched data term (S > VECDOT_MAX_SAMPLES draws) has its own backward: the same gradient as autograd's
    einsum (bit for bit in η), and a second derivative (semi-amortised training differentiates through a gradient)."""
    from varinf.likelihoods import VECDOT_MAX_SAMPLES, _DataTerm
    g = torch.Generator().manual_seed(2)
    eta = torch.randn(VECDOT_MAX_SAMPLES + 3, 6, 40, generator=g).requires_grad_()
    x = (torch.rand(6, 40, generator=g) < 0.5).float().requires_grad_()
    w = torch.randn(VECDOT_MAX_SAMPLES + 3, 6, generator=g)
    ours = _DataTerm.apply(eta, x)
    ref = torch.einsum("sbd,bd->sb", eta, x)
    assert torch.equal(ours, ref)
    (ge, gx), (re, rx) = torch.autograd.grad((w * ours).sum(), (eta, x)), torch.autograd.grad((w * ref).sum(), (eta, x))
    assert torch.equal(ge, re)                               # ∂/∂η_sbd = w_sb x_bd: one product per element
    torch.testing.assert_close(gx, rx, rtol=1e-6, atol=1e-6)  # Σ_s w_sb η_sbd: a sum, in another order
    g_eta, = torch.autograd.grad((w * _DataTerm.apply(eta, x)).sum(), eta, create_graph=True)
    second, = torch.autograd.grad((g_eta ** 2).sum(), x)                     # ∂/∂x Σ (w x)² = 2 Σ_s w² x
    torch.testing.assert_close(second, 2 * (w ** 2).sum(0)[:, None] * x.detach(), rtol=1e-6, atol=1e-6)


def test_bernoulli_log_likelihood_float32_is_within_rounding():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(20, 10, 784, generator=g) * 5
    x = (torch.rand(10, 784, generator=g) < 0.3).float()
    truth = D.Bernoulli(logits=logits.double(), validate_args=False).log_prob(x.double()).sum(-1)
    assert (bernoulli_log_likelihood(logits, x).double() - truth).abs().max() < 1e-6 * truth.abs().max()


def test_evaluation_agrees_across_chunk_sizes_within_monte_carlo_error():
    """The chunk size changes which normal draws torch makes (its CPU sampler works in blocks of 16), not the estimate."""
    torch.manual_seed(0)
    model = VAE(VAEConfig(data_dim=40, latent_dim=5, hidden=(16,))).eval()
    x = (torch.rand(30, 40) < 0.5).float()
    assert _chunk(5000, 100, 784, "cpu") == 12 and _chunk(5000, 100, 784, "cuda") == 510
    a = evaluate_model(model, x, nll_samples=4000, batch_size=10, chunk_size=7)
    b = evaluate_model(model, x, nll_samples=4000, batch_size=10, chunk_size=4000)
    same = evaluate_model(model, x, nll_samples=4000, batch_size=10, chunk_size=4000)
    assert torch.equal(b["log_px"], same["log_px"])                  # a pure function of the seed
    for key in ("log_px", "elbo"):                                   # independent draws, the same estimand
        diff = a[key] - b[key]                                       # (30,)
        assert diff.abs().max() < 0.3
        assert diff.mean().abs() < 3 * diff.std() / diff.numel() ** 0.5 + 1e-3
