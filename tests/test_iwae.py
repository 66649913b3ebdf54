"""IWAE training (Burda, Grosse & Salakhutdinov 2016): its update, its bound, and the CLI."""

import json
import math

import pytest
import torch

from test_methods_exact import exact_grads, linear_gaussian, method_grads
from varinf.cli import main
from varinf.config import TrainConfig
from varinf.infer import AEVB, IWAE, METHODS

torch.set_num_threads(1)


def test_k_equal_one_is_the_vae_sgvb_a_update_with_the_same_noise():
    model, x = linear_gaussian()
    iwae = method_grads(IWAE(model, samples=1), x, torch.Generator().manual_seed(3))
    vae = method_grads(AEVB(model, "A", samples=1), x, torch.Generator().manual_seed(3))
    for name in ("generative", "inference"):
        assert torch.allclose(iwae[name], vae[name], rtol=1e-10, atol=1e-12)
        assert iwae[name].abs().max() > 1e-3                                   # not trivially zero


def independent_iwae_loss(model, x, k, seed):
    """−(1/B) Σ_b L_k(x_b), written out from Burda et al. 2016 Eq. 8 with the draws the method makes."""
    mu, log_std = model.encode(x)                                              # (B, K)
    eps = torch.randn((k, *mu.shape), generator=torch.Generator().manual_seed(seed), dtype=mu.dtype)
    z = mu + log_std.exp() * eps                                               # (k, B, K)
    log_q = (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_w = model.lg.log_joint(x, z) - log_q                                   # (k, B)
    return -(torch.logsumexp(log_w, 0) - math.log(k)).mean()


@pytest.mark.parametrize("k", [2, 7])
def test_update_is_the_gradient_of_the_k_sample_bound_with_the_same_noise(k):
    model, x = linear_gaussian()
    method = IWAE(model, samples=k)
    got = method_grads(method, x, torch.Generator().manual_seed(11))
    want = exact_grads(method, independent_iwae_loss(model, x, k, 11))
    for name in ("generative", "inference"):
        assert torch.allclose(got[name], want[name], rtol=1e-9, atol=1e-11), name
    other = exact_grads(method, independent_iwae_loss(model, x, k, 12))       # other noise: another gradient
    assert not torch.allclose(got["inference"], other["inference"], rtol=1e-3)


def test_bound_lies_between_the_elbo_and_log_px_and_rises_with_k():
    """E[L_1] = ELBO ≤ E[L_k] ≤ E[L_{k'}] ≤ log p(x) for k < k' (Burda et al. 2016 Thm. 1), by Monte Carlo."""
    model, x = linear_gaussian()
    n = 4000
    xs = x.repeat(n, 1)                                                        # n independent L_k per point
    gen = torch.Generator().manual_seed(0)
    means, ses = [], []
    with torch.no_grad():
        for k in (1, 3, 10, 50):
            values = IWAE(model, samples=k).validation_bound(xs, 1, gen).reshape(n, x.shape[0])
            means.append(values.mean(0))
            ses.append(values.std(0) / math.sqrt(n))
        elbo = model.lg.exact_elbo(x, *model.encode(x))
        log_px = model.lg.log_marginal(x)
    assert ((means[0] - elbo).abs() <= 4 * ses[0]).all()                        # L_1 is the ELBO
    for (a, sa), (b, sb) in zip(zip(means, ses), zip(means[1:], ses[1:])):
        assert (b - a > 4 * torch.sqrt(sa ** 2 + sb ** 2)).all()                # strictly higher with k
    assert (means[-1] <= log_px + 4 * ses[-1]).all()
    assert (log_px - elbo > 1.0).all()                                          # a real gap to close


def test_registry_defaults_and_cli_run_on_digits(tmp_path):
    spec = METHODS["iwae"]
    assert spec.families == ("gaussian",) and TrainConfig(method="iwae").resolved().samples == 5
    with pytest.raises(Exception, match="trains gaussian latents"):
        TrainConfig(method="iwae", model="sbn")
    out = tmp_path / "iwae"
    assert main(["train", "--method", "iwae", "--samples", "3", "--latent-dim", "4", "--hidden", "32",
                 "--epochs", "2", "--out", str(out), "--quiet", "--threads", "1"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["method"] == "iwae" and saved["train"]["samples"] == 3
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 2 and all(math.isfinite(r["valid_elbo"]) for r in history)
