"""GBVI (Hjelm et al. 2015 §4) and the semi-amortised encoder update: unit checks and the CLI end to end."""

import json
from pathlib import Path

import pytest
import torch

from varinf.checkpoint import read_checkpoint
from varinf.cli import main
from varinf.config import make_config
from varinf.errors import ConfigError
from varinf.families import GAUSSIAN
from varinf.infer import METHODS, RefinedEM, make_optimizer
from varinf.infer.refined_em import encoder_kl_loss
from varinf.models import VAE, VAEConfig
from varinf.infer.savae import semi_amortized_bound
from varinf.refinement import GaussianGradient
from varinf.training import method_for, optimizers_for

FAST = ["--dataset", "digits", "--hidden", "32", "--latent-dim", "2", "--quiet"]


def run_cli(*args) -> int:
    return main([str(a) for a in args])


def tiny_vae(dtype=torch.float32, seed=0) -> VAE:
    torch.manual_seed(seed)
    return VAE(VAEConfig(data_dim=6, latent_dim=2, hidden=(5,))).to(dtype)


def binary_x(b=4, d=6, dtype=torch.float32):
    return torch.bernoulli(torch.full((b, d), 0.5, dtype=dtype), generator=torch.Generator().manual_seed(1))


def test_methods_registered():
    assert {"vae", "gbvi", "savae", "mpvi", "stvi", "avi"} <= set(METHODS)
    assert METHODS["gbvi"].refiner is not None and METHODS["vae"].refiner is None


def test_gbvi_e_step_leaves_theta_unchanged_and_each_loss_reaches_only_its_group():
    model, x = tiny_vae(), binary_x()
    cfg = make_config(method="gbvi", refine_steps=5, inference_rate=0.05, samples=3, refine_samples=3)
    method = method_for(cfg, model, 6)
    assert isinstance(method, RefinedEM) and isinstance(method.refiner, GaussianGradient)
    gen = torch.Generator().manual_seed(0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mu, log_std = method.e_step(x, gen).params
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    for p in model.parameters():
        assert p.grad is None
    assert not mu.requires_grad
    with torch.no_grad():
        mu0, _ = model.encode(x)
    assert not torch.equal(mu, mu0)                                      # it did refine
    optimizers = optimizers_for(cfg, method)
    method.step(x, gen, optimizers)                                      # M-step on θ, Eq. 6 on φ
    after = model.state_dict()
    for prefix in ("encoder", "decoder"):
        assert any(not torch.equal(after[k], before[k]) for k in before if k.startswith(prefix))
    theta = {id(p) for p in method.parameter_groups()["generative"]}
    assert theta == {id(p) for p in model.decoder.parameters()}


def test_encoder_kl_update_moves_encoder_towards_refined_posterior():
    model, x = tiny_vae(), binary_x()
    target = (torch.ones(4, 2), torch.full((4, 2), -0.5))
    opt = torch.optim.Adam(model.encoder.parameters(), lr=0.05)
    kls = []
    for _ in range(100):
        kl = encoder_kl_loss(GAUSSIAN, target, model.encode(x)).mean()
        opt.zero_grad()
        kl.backward()
        opt.step()
        kls.append(kl.item())
    assert kls[-1] < 0.05 * kls[0]


@pytest.mark.parametrize("rule", ["sgd", "adam"])
def test_semi_amortized_gradient_against_finite_differences(rule):
    model, x = tiny_vae(torch.float64), binary_x(dtype=torch.float64)
    refiner = GaussianGradient(3, 0.1, rule, samples=2)

    def f():     # the same noise on every call: a deterministic function of φ
        b, _ = semi_amortized_bound(model, x, refiner, torch.Generator().manual_seed(3))
        return b.sum()

    params = list(model.encoder.parameters())
    grads = torch.autograd.grad(f(), params)
    g = torch.Generator().manual_seed(4)
    eps = 1e-6
    with torch.no_grad():
        for p, gp in zip(params, grads):
            for _ in range(3):
                idx = tuple(torch.randint(s, (1,), generator=g).item() for s in p.shape)
                old = p[idx].item()
                p[idx] = old + eps
                up = f().item()
                p[idx] = old - eps
                down = f().item()
                p[idx] = old
                fd = (up - down) / (2 * eps)
                assert abs(fd - gp[idx].item()) <= 1e-5 * max(1.0, abs(fd)), (idx, fd, gp[idx].item())
    # the gradient through the steps differs from the gradient that ignores them (T > 0 matters)
    mu0, ls0 = model.encode(x)
    from gaussian_helpers import gaussian_bound
    plain = gaussian_bound(model.log_joint, x, mu0, ls0, 2, torch.Generator().manual_seed(3)).sum()
    g_plain = torch.autograd.grad(plain, params)
    assert any(not torch.allclose(a, b) for a, b in zip(grads, g_plain))


def test_savae_step_updates_both_networks():
    model, x = tiny_vae(), binary_x()
    cfg = make_config(method="savae", refine_steps=3, inference_rate=0.05, samples=2, refine_samples=2)
    method = method_for(cfg, model, 6)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bound = method.step(x, torch.Generator().manual_seed(0), optimizers_for(cfg, method))
    assert bound.shape == () and torch.isfinite(bound)
    after = model.state_dict()
    for prefix in ("encoder", "decoder"):
        assert any(not torch.equal(after[k], before[k]) for k in before if k.startswith(prefix))


def test_config_validation_and_method_defaults():
    cfg = make_config(method="gbvi").resolved()                        # the paper's T = N = 20 by default
    assert (cfg.refine_steps, cfg.refine_samples, cfg.samples, cfg.valid_refine_steps) == (20, 20, 20, 20)
    assert make_config(method="vae").resolved().samples == 1
    with pytest.raises(ConfigError, match="refine_optimizer"):
        make_config(refine_optimizer="lbfgs")
    with pytest.raises(ConfigError, match="inference_rate"):
        make_config(inference_rate=0)


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_linear_warmup_scales_the_learning_rate_by_update_count(optimizer):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(3))
    opt = make_optimizer([w], optimizer, 0.1, warmup_steps=4)
    used = []
    for _ in range(6):
        opt.zero_grad()
        (w ** 2).sum().backward()
        opt.step()
        used.append(opt.param_groups[0]["lr"])                            # the rate this update used
    assert used == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])
    fresh = make_optimizer([w], optimizer, 0.1, warmup_steps=8)
    fresh.load_state_dict(opt.state_dict())                               # a resumed run: 6 updates done
    fresh.zero_grad()
    (w ** 2).sum().backward()
    fresh.step()
    assert fresh.param_groups[0]["lr"] == pytest.approx(0.1 * 7 / 8)
    with pytest.raises(ConfigError, match="warmup_steps"):
        make_config(warmup_steps=-1)


def tensors(run: Path, which="last") -> dict:
    return read_checkpoint(run / "checkpoints", which)[0]


def test_gbvi_cli_train_resume_eval(tmp_path):
    # RMSprop with a warm-up that is still running at the resume point (digits: 12 updates per epoch)
    args = [*FAST, "--method", "gbvi", "--refine-steps", 3, "--inference-rate", 0.01, "--samples", 2,
            "--refine-samples", 2, "--seed", 2, "--optimizer", "rmsprop", "--lr", 3e-3, "--warmup-steps", 30]
    full, part = tmp_path / "full", tmp_path / "part"
    assert run_cli("train", *args, "--epochs", 3, "--out", full) == 0
    assert run_cli("train", *args, "--epochs", 2, "--out", part) == 0
    assert run_cli("train", *args, "--epochs", 3, "--out", part, "--resume") == 0
    a, b = tensors(full), tensors(part)
    assert a.keys() == b.keys()
    assert any(k.startswith("generative/optim") for k in a) and any(k.startswith("inference/optim") for k in a)
    for k in a:                                                         # weights and both optimizers
        assert torch.equal(a[k], b[k]), k
    meta = json.loads((full / "checkpoints" / "last.json").read_text())
    assert set(meta["optimizers"]) == {"generative", "inference"}
    config = json.loads((full / "config.json").read_text())
    assert config["method"] == "gbvi" and "refined" in config["valid_elbo"]
    assert config["train"]["refine_steps"] == 3
    hist = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    assert hist[-1]["valid_elbo"] > hist[0]["valid_elbo"]               # it learns

    assert run_cli("eval", full, "--nll-samples", 50, "--quiet", "--refine-sweep", "0,1,5") == 0
    result = json.loads((full / "eval.json").read_text())
    assert result["refiner"]["steps"] == 3                              # the run's own T by default
    assert result["refiner"]["refiner"] == "gaussian-gradient"
    for key in ("test_elbo", "test_nll", "test_elbo_refined", "test_nll_refined", "amortization_gap"):
        assert key in result
    assert result["amortization_gap"] > -3 * result["amortization_gap_stderr"]
    assert [r["steps"] for r in result["refine_sweep"]] == [0, 1, 5]
    assert (full / "figures" / "amortization_gap.png").stat().st_size > 5000


def test_eval_refines_a_plain_vae(tmp_path, capsys):
    run = tmp_path / "vae"
    assert run_cli("train", *FAST, "--epochs", 3, "--out", run) == 0
    assert run_cli("eval", run, "--nll-samples", 50, "--quiet") == 0
    plain = json.loads((run / "eval.json").read_text())
    assert plain["refiner"]["steps"] == 0 and plain["amortization_gap"] is None and plain["test_nll_refined"] is None
    assert run_cli("eval", run, "--nll-samples", 50, "--quiet", "--refine-steps", 20, "--inference-rate", 0.02,
                   "--refine-optimizer", "adam") == 0
    refined = json.loads((run / "eval.json").read_text())
    assert refined["test_elbo"] == plain["test_elbo"]                   # the encoder numbers are unchanged
    assert refined["refiner"] == {"refiner": "gaussian-gradient", "steps": 20, "rate": 0.02, "step_rule": "adam",
                                  "samples": 20}
    # a 3-epoch encoder is far from optimal: 20 Adam steps must close a clearly positive gap
    assert refined["amortization_gap"] > 3 * refined["amortization_gap_stderr"] > 0
    assert refined["test_elbo_refined"] > refined["test_elbo"]
    assert run_cli("eval", run, "--refine-steps", -1, "--quiet") == 2
    assert run_cli("train", *FAST, "--method", "gbvi", "--refine-steps", -1, "--out", tmp_path / "bad") == 2
    assert run_cli("eval", run, "--nll-samples", 5, "--quiet", "--refine-steps", 30, "--inference-rate", 1e3) == 2
    assert "diverged" in capsys.readouterr().err                      # a named error, not NaN in eval.json
    # --output keeps the run's eval.json and puts the sweep's figure beside the new file
    before = (run / "eval.json").read_bytes()
    out = tmp_path / "sweeps" / "gap.json"
    assert run_cli("eval", run, "--nll-samples", 20, "--quiet", "--refine-sweep", "0,2", "--output", out) == 0
    assert (run / "eval.json").read_bytes() == before
    assert [r["steps"] for r in json.loads(out.read_text())["refine_sweep"]] == [0, 2]
    assert (tmp_path / "sweeps" / "gap_amortization_gap.png").stat().st_size > 5000
