"""Sigmoid belief networks (Hjelm et al. 2015 §5): exact enumeration, unbiasedness of the score-function
estimators, AVI, wake-sleep, the training methods from the API and the CLI, checkpoint/resume."""

import json
import math
from pathlib import Path

import pytest
import torch

from varinf.checkpoint import read_checkpoint
from varinf.cli import main
from varinf.config import make_config
from varinf.enumeration import (all_binary, exact_elbo, exact_log_marginal, exact_posterior, kl_to_posterior)
from varinf.errors import ConfigError
from varinf.infer import METHODS, make_optimizer
from varinf.infer.wake_sleep import sleep_objective
from varinf.models import SBN, SBNConfig
from varinf.families import BERNOULLI, Posterior
from varinf.objectives import elbo_and_log_marginal, log_weights
from varinf.refinement import AdaptiveImportanceSampling
from varinf.training import method_for, optimizers_for


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one intra-op thread is faster and keeps CPU use light."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_sbn(k=4, d=6, hidden=(), seed=0, scale=1.0) -> SBN:
    torch.manual_seed(seed)
    model = SBN(SBNConfig(data_dim=d, latent_dim=k, hidden=hidden))
    with torch.no_grad():                       # a model with a non-trivial posterior
        for p in model.parameters():
            p.mul_(scale)
        model.prior_logits.copy_(torch.randn(k, generator=torch.Generator().manual_seed(seed + 1)))
    return model


def binary_x(b=3, d=6, seed=1):
    return torch.bernoulli(torch.full((b, d), 0.5), generator=torch.Generator().manual_seed(seed))


def run_cli(*args) -> int:
    return main([str(a) for a in args])


# ---- enumeration ------------------------------------------------------------------------
def test_all_binary_and_posterior_normalised():
    h = all_binary(3)
    assert h.shape == (8, 3) and len({tuple(r.tolist()) for r in h}) == 8
    model, x = tiny_sbn(), binary_x()
    post = exact_posterior(model, x)
    assert post.shape == (3, 16)
    torch.testing.assert_close(post.sum(1), torch.ones(3))
    # p(x) sums to one over all 2^D visible vectors
    xs = all_binary(6)
    torch.testing.assert_close(exact_log_marginal(model, xs).exp().sum(), torch.tensor(1.0), atol=1e-5, rtol=0)


def test_elbo_below_log_marginal_and_equal_at_the_posterior_for_one_latent():
    model, x = tiny_sbn(k=4), binary_x()
    logits = torch.randn(3, 4)
    assert (exact_elbo(model, logits, x) <= exact_log_marginal(model, x) + 1e-6).all()
    assert (kl_to_posterior(logits, model, x) >= -1e-6).all()
    one = tiny_sbn(k=1)                      # K = 1: a factorial q can equal the posterior
    post1 = exact_posterior(one, x)[:, 1:]
    torch.testing.assert_close(exact_elbo(one, torch.logit(post1), x), exact_log_marginal(one, x), atol=1e-5, rtol=0)


def test_exact_elbo_matches_monte_carlo():
    model, x = tiny_sbn(), binary_x()
    logits, _ = model.encode(x)[0], None
    lw = log_weights(model, model.q(logits), x, 20000, torch.Generator().manual_seed(0)).detach()
    se = lw.std(0) / math.sqrt(lw.shape[0])
    assert ((lw.mean(0) - exact_elbo(model, logits, x).detach()).abs() < 4 * se).all()


def test_importance_sampling_converges_to_log_marginal():
    model, x = tiny_sbn(k=6, d=8), binary_x(4, 8)
    exact = exact_log_marginal(model, x)
    q = model.q(*model.encode(x))
    gen = torch.Generator().manual_seed(0)
    errs = []
    for k in (10, 20000):
        elbo, log_px = elbo_and_log_marginal(model, q, x, k, 5000, gen)
        assert (elbo <= exact + 0.5).all()
        errs.append((log_px - exact).abs())
    # k = 20000: within 4 of the estimator's own s.e. ≈ sd(w) / (√k mean w) (delta method; ≈ 0.004–0.008 here)
    lw = log_weights(model, q, x, 20000, torch.Generator().manual_seed(1))
    r = (lw - lw.max(0).values).exp()
    se = r.std(0) / (r.mean(0) * math.sqrt(20000))
    assert (errs[1] <= 4 * se).all() and errs[1].max() < errs[0].max()


# ---- NVIL's baseline (the exact-gradient tests of every method: tests/test_methods_exact.py) ----------
def test_nvil_baseline_lowers_variance_after_training():
    model, x = tiny_sbn(), binary_x()
    cfg = make_config(model="sbn", method="nvil", hidden=(), latent_dim=4, lr=1e-2, samples=1)
    method = method_for(cfg, model, x.shape[1])
    optimizers = optimizers_for(cfg, method)
    gen = torch.Generator().manual_seed(0)
    for _ in range(150):
        method.step(x, gen, optimizers)
    assert method.state.mean.abs() > 0 and method.state.var > 0
    with torch.no_grad():
        signal = log_weights(model, model.q(*model.encode(x)), x, 2000, gen)
        b = method.state(x) + method.state.mean
    assert ((signal - b) ** 2).mean() < ((signal - signal.mean()) ** 2).mean()


# ---- AVI and wake-sleep -------------------------------------------------------------------
def test_avi_refinement_lowers_kl_to_the_posterior():
    model, x = tiny_sbn(k=5, d=8, scale=2.0), binary_x(4, 8)
    logits = model.encode(x)[0].detach()
    probs = torch.sigmoid(AdaptiveImportanceSampling(3, samples=4000, rate=1.0).refine(
        model, Posterior(BERNOULLI, (logits,)), x, torch.Generator().manual_seed(0)).params[0])
    assert probs.min() >= 1e-3 and probs.max() <= 1 - 1e-3          # the documented clamp
    before = kl_to_posterior(logits, model, x)
    after = kl_to_posterior(torch.logit(probs), model, x)
    assert after.mean() < 0.5 * before.mean()
    # the fixed point with infinitely many samples: the posterior marginals
    marginals = exact_posterior(model, x) @ all_binary(5)
    torch.testing.assert_close(probs, marginals.clamp(1e-3, 1 - 1e-3), atol=0.05, rtol=0)


def test_damped_avi_step_is_the_interpolation_and_still_reaches_the_marginals():
    model, x = tiny_sbn(k=5, d=8, scale=2.0), binary_x(4, 8)
    logits0 = model.encode(x)[0].detach()
    probs0 = torch.sigmoid(logits0)

    def avi(steps, samples, seed, rate):
        refiner = AdaptiveImportanceSampling(steps, samples=samples, rate=rate)
        return torch.sigmoid(refiner.refine(model, Posterior(BERNOULLI, (logits0,)), x,
                                            torch.Generator().manual_seed(seed)).params[0])

    full = avi(1, 50, 1, 1.0)
    damped = avi(1, 50, 1, 0.3)
    unclamped = full.clamp(1e-3, 1 - 1e-3) == full                  # units where the clamp did not act
    torch.testing.assert_close(damped[unclamped], (0.7 * probs0.clamp(1e-3, 1 - 1e-3) + 0.3 * full)[unclamped])
    many = avi(30, 4000, 2, 0.3)
    marginals = exact_posterior(model, x) @ all_binary(5)
    torch.testing.assert_close(many, marginals.clamp(1e-3, 1 - 1e-3), atol=0.05, rtol=0)
    with pytest.raises(ConfigError, match="avi_rate"):
        make_config(model="sbn", method="avi", refine_steps=2, avi_rate=1.5)


def test_wake_sleep_sleep_phase_fits_q_to_the_models_own_samples():
    model = tiny_sbn(k=3, d=6, hidden=(8,), scale=2.0)
    xs = all_binary(6)                                          # every visible vector
    def dream_kl():                                             # E_{p(x)} KL(p(h|x) ‖ q(h|x)), exactly
        with torch.no_grad():
            px = exact_log_marginal(model, xs).exp()
            post = exact_posterior(model, xs)                   # (64, 8)
            log_q = model.q(*model.encode(xs)).log_prob(all_binary(3)[:, None, :]).T
            return (px * (post * (post.clamp_min(1e-30).log() - log_q)).sum(1)).sum().item()
    optimizer = make_optimizer(model.inference_parameters(), "adam", 3e-2)
    theta = [p.clone() for p in model.generative_parameters()]
    gen = torch.Generator().manual_seed(0)
    before = dream_kl()
    for _ in range(150):
        loss = -sleep_objective(model, 64, gen).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert dream_kl() < 0.5 * before
    assert all(torch.equal(a, b) for a, b in zip(theta, model.generative_parameters()))


# ---- training methods ---------------------------------------------------------------------
SBN_METHODS = sorted(name for name, spec in METHODS.items() if "bernoulli" in spec.families)


def test_methods_registered_and_config_errors():
    assert {"mpvi", "stvi", "avi", "mean-pass", "straight-through", "wake-sleep", "nvil", "reinforce"} <= set(SBN_METHODS)
    with pytest.raises(ConfigError, match="with --model mlp use one of"):
        make_config(method="mpvi", model="mlp")
    with pytest.raises(ConfigError, match="wake-sleep"):
        make_config(method="vae", model="sbn")
    cfg = make_config(method="avi", model="sbn").resolved()        # the paper's defaults, no flags needed
    assert (cfg.refine_steps, cfg.refine_samples, cfg.samples, cfg.valid_refine_steps) == (20, 20, 20, 0)


@pytest.mark.parametrize("name", SBN_METHODS)
def test_each_method_steps_from_the_api(name):
    model, x = tiny_sbn(k=4, d=6, hidden=(5,)), binary_x(8, 6)
    cfg = make_config(model="sbn", method=name, hidden=(5,), latent_dim=4, refine_steps=2, samples=2, lr=1e-2)
    method = method_for(cfg, model, 6)
    optimizers = optimizers_for(cfg, method)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        bound = method.step(x, gen, optimizers)
        assert bound.shape == () and torch.isfinite(bound) and not bound.requires_grad
    assert all(not torch.equal(v, before[k]) for k, v in model.state_dict().items()), name
    vb = method.validation_bound(x, 3, gen)
    assert vb.shape == (8,) and torch.isfinite(vb).all()


FAST = ["--model", "sbn", "--dataset", "digits", "--hidden", "", "--latent-dim", 8, "--batch-size", 20,
        "--lr", 3e-3, "--threads", 1, "--quiet", "--patience", 0]


@pytest.mark.parametrize("name", SBN_METHODS)
def test_cli_train_and_eval_each_method(tmp_path, name, capsys):
    out = tmp_path / name
    assert run_cli("train", "--out", out, "--method", name, "--epochs", 3, "--refine-steps", 2, *FAST) == 0
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert history[-1]["valid_elbo"] > history[0]["valid_elbo"]            # the bound improves
    assert json.loads((out / "config.json").read_text())["model_kind"] == "sbn"
    assert run_cli("eval", out, "--nll-samples", 50, "--quiet", "--refine-steps", 1) == 0
    result = json.loads((out / "eval.json").read_text())
    assert math.isfinite(result["test_nll"]) and result["test_elbo"] <= -result["test_nll"] + 1e-3
    assert math.isfinite(result["test_nll_refined"])


def test_cli_damped_avi_trains_and_evaluates_with_its_rate(tmp_path, capsys):
    out = tmp_path / "avi"
    assert run_cli("train", "--out", out, "--method", "avi", "--epochs", 2, "--refine-steps", 2, "--avi-rate", 0.3,
                   *FAST) == 0
    assert json.loads((out / "config.json").read_text())["train"]["avi_rate"] == 0.3
    assert run_cli("eval", out, "--nll-samples", 20, "--quiet", "--refine-steps", 2) == 0
    refiner = json.loads((out / "eval.json").read_text())["refiner"]
    assert refiner["refiner"] == "avi" and refiner["rate"] == 0.3                  # the run's γ by default
    assert run_cli("eval", out, "--nll-samples", 20, "--quiet", "--refine-steps", 2, "--avi-rate", 2) == 2
    # --inference-rate is the gradient refiners' step: refused for an AVI refiner, not silently reused
    assert run_cli("eval", out, "--nll-samples", 20, "--quiet", "--inference-rate", 0.5) == 2
    assert "--avi-rate" in capsys.readouterr().err


def test_cli_rejects_mismatched_model_and_method(tmp_path, capsys):
    assert run_cli("train", "--out", tmp_path / "a", "--method", "avi", "--model", "mlp", "--quiet") == 2
    assert "bernoulli latents" in capsys.readouterr().err


def test_resume_is_bit_identical_with_method_state(tmp_path):
    args = ["--method", "nvil", "--hidden", "6", *FAST[:4], *FAST[6:]]
    assert run_cli("train", "--out", tmp_path / "full", "--epochs", 3, *args) == 0
    assert run_cli("train", "--out", tmp_path / "part", "--epochs", 1, *args) == 0
    assert run_cli("train", "--out", tmp_path / "part", "--epochs", 3, "--resume", *args) == 0
    a = read_checkpoint(tmp_path / "full" / "checkpoints", "last")[0]
    b = read_checkpoint(tmp_path / "part" / "checkpoints", "last")[0]
    assert set(a) == set(b) and any(k.startswith("model.method.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
