"""Hamiltonian variational inference (Salimans, Kingma & Welling 2015): K = 0, the bound, gradients, CLI."""

import json
import math

import pytest
import torch

from test_methods_exact import linear_gaussian, method_grads
from varinf.cli import main
from varinf.config import TrainConfig
from varinf.infer import AEVB, HVI
from varinf.objectives import sgvb_a
from varinf.training import load_model

torch.set_num_threads(1)


def near_posterior(model, widen=1.5):
    """Set the linear encoder to the exact posterior mean and σ_k = widen · √S_kk (a diagonal q near p(z|x))."""
    lg = model.lg
    with torch.no_grad():
        w_scaled = lg.weight / lg.noise_var[:, None]                              # Ψ⁻¹ W  (D, K)
        cov = torch.linalg.inv(torch.eye(lg.latent_dim, dtype=w_scaled.dtype) + lg.weight.T @ w_scaled)
        gain = (w_scaled @ cov).T                                                  # m = gain (x − b)  (K, D)
        k = lg.latent_dim
        model.encoder.weight.zero_()
        model.encoder.weight[:k] = gain
        model.encoder.bias[:k] = -gain @ lg.bias
        model.encoder.bias[k:] = (widen * cov.diagonal().sqrt()).log()
    return model


def hvi(model, x, steps, step_size=None, seed=0):
    method = HVI(model, x.shape[1], steps=steps, samples=2, hidden=(6,), activation="tanh", seed=seed)
    with torch.no_grad():
        if step_size is not None:
            method.state.log_step.fill_(math.log(step_size))
        if method.state.reverse is not None:          # a generic r(v|x, z), not the zero-initialised one
            g = torch.Generator().manual_seed(seed + 1)
            for p in method.state.reverse.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return method


def test_zero_steps_is_sgvb_a_on_the_same_draws():
    model, x = linear_gaussian()
    method = hvi(model, x, steps=0)
    assert list(method.state.parameters())[0].numel() == 0 and method.state.reverse is None
    bound = method.bound(x, 3, torch.Generator().manual_seed(5))
    q = model.family.dist(*model.encode(x))
    assert torch.allclose(bound, sgvb_a(model, q, x, 3, torch.Generator().manual_seed(5)), rtol=1e-12, atol=1e-12)
    got = method_grads(method, x, torch.Generator().manual_seed(7))
    want = method_grads(AEVB(model, "A", samples=2), x, torch.Generator().manual_seed(7))
    for name in ("generative", "inference"):
        assert torch.allclose(got[name], want[name], rtol=1e-10, atol=1e-12)


def test_extra_parameters_are_in_the_inference_group():
    model, x = linear_gaussian()
    method = hvi(model, x, steps=3)
    groups = {name: {id(p) for p in params} for name, params in method.parameter_groups().items()}
    own = {id(p) for p in method.state.parameters()}
    assert own <= groups["inference"] and not own & groups["generative"]
    assert method.state.log_step.shape == (3, model.latent_dim)
    assert method.state_module() is method.state


@pytest.mark.parametrize("steps, step_size", [(1, 0.2), (4, 0.1)])
def test_bound_stays_below_the_exact_log_px(steps, step_size):
    """E[L_HVI] ≤ log p(x) (Monte Carlo mean over 4000 draws ± 4 s.e.); the dynamics do move z."""
    model, x = linear_gaussian()
    method = hvi(near_posterior(model), x, steps=steps, step_size=step_size)
    n = 4000
    with torch.no_grad():
        values = method.validation_bound(x.repeat(n, 1), 1, torch.Generator().manual_seed(0)).reshape(n, -1)
        log_px = model.lg.log_marginal(x)
    mean, se = values.mean(0), values.std(0) / math.sqrt(n)
    assert (mean <= log_px + 4 * se).all(), (mean, log_px, se)
    assert (se < 0.5).all()
    # the same draws without the momentum's change, log r(v_K) − log q(v_0), give another value: z moved
    z0 = model.family.draw(model.encode(x), 1, torch.Generator().manual_seed(1))
    v0 = torch.randn(z0.shape, dtype=z0.dtype)
    z, v, _ = method.leapfrog(x, z0, v0, create_graph=False)
    assert (z - z0).abs().max() > 1e-2 and (v - v0).abs().max() > 1e-2


def test_learned_steps_and_reverse_model_close_most_of_the_gap():
    """With θ, φ fixed (a too-wide q at the posterior mean), ascending L_HVI in ε and r_ψ alone lifts the
    bound from the ELBO to within a quarter of the gap to log p(x), and not above log p(x)."""
    torch.manual_seed(0)
    model, x = linear_gaussian()
    near_posterior(model, widen=2.0)
    method = HVI(model, x.shape[1], steps=3, samples=16, hidden=(16,), activation="tanh")
    opt = torch.optim.Adam(method.state.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    for _ in range(400):
        opt.zero_grad()
        (-method.bound(x, 16, gen).mean()).backward()
        opt.step()
    n = 4000
    with torch.no_grad():
        values = method.validation_bound(x.repeat(n, 1), 1, torch.Generator().manual_seed(0)).reshape(n, -1)
        log_px, elbo = model.lg.log_marginal(x), model.lg.exact_elbo(x, *model.encode(x))
    mean, se = values.mean(0), values.std(0) / math.sqrt(n)
    assert (log_px - elbo > 1.0).all()
    assert (mean <= log_px + 4 * se).all()
    assert (log_px - mean < 0.25 * (log_px - elbo)).all(), (mean, log_px, elbo)


def test_a_broken_bound_would_be_caught():
    """The check above can fail: dropping the Jacobian-free momentum term log q(v_0) breaks the bound."""
    model, x = linear_gaussian()
    method = hvi(near_posterior(model), x, steps=2, step_size=0.1)
    n = 2000
    with torch.no_grad():
        xs = x.repeat(n, 1)
        values = method.validation_bound(xs, 1, torch.Generator().manual_seed(0)).reshape(n, -1)
        broken = values + 0.5 * model.latent_dim * (1 + math.log(2 * math.pi))   # + H(q(v)) = − E log q(v₀)
    assert (broken.mean(0) > model.lg.log_marginal(x)).any()


def test_gradients_match_finite_differences_with_common_random_numbers():
    model, x = linear_gaussian()
    method = hvi(model, x, steps=2, step_size=0.2)
    grads = method_grads(method, x, torch.Generator().manual_seed(9))          # of −mean L_HVI

    def loss():
        with torch.enable_grad():
            return -method.bound(x, 2, torch.Generator().manual_seed(9)).mean().item()

    groups = method.parameter_groups()
    checked = 0
    for name, params in groups.items():
        flat = grads[name]
        offset = 0
        for p in params:
            for idx in ([0, p.numel() - 1] if p.numel() else []):
                h = 1e-6
                with torch.no_grad():
                    old = p.view(-1)[idx].item()
                    p.view(-1)[idx] = old + h
                    up = loss()
                    p.view(-1)[idx] = old - h
                    down = loss()
                    p.view(-1)[idx] = old
                fd = (up - down) / (2 * h)
                assert abs(fd - flat[offset + idx].item()) <= 1e-5 * (1 + abs(fd)), (name, p.shape, idx, fd)
                checked += 1
            offset += p.numel()
    assert checked >= 2 * (len(groups["generative"]) + len(groups["inference"]))


def test_registry_and_cli_run_on_digits(tmp_path):
    cfg = TrainConfig(method="hvi").resolved()
    assert (cfg.leapfrog_steps, cfg.samples, cfg.refine_steps) == (5, 1, 0)
    out = tmp_path / "hvi"
    assert main(["train", "--method", "hvi", "--leapfrog-steps", "2", "--latent-dim", "4", "--hidden", "32",
                 "--epochs", "2", "--out", str(out), "--quiet", "--threads", "1"]) == 0
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 2 and all(math.isfinite(r["valid_elbo"]) for r in history)
    assert main(["train", "--out", str(out), "--resume", "--epochs", "3", "--quiet"]) == 0      # method state restored
    model, cfg, meta = load_model(out)
    assert cfg.method == "hvi" and cfg.leapfrog_steps == 2


def test_load_method_restores_the_learned_steps_and_reverse_model(tmp_path):
    """varinf.load_method rebuilds the run's own objective: on the validation split with the training loop's
    generator it gives the checkpoint's logged bound exactly, and it depends on the restored step sizes."""
    from varinf.data import load_dataset
    from varinf.training import load_method, validation_bound
    out = tmp_path / "hvi"
    assert main(["train", "--method", "hvi", "--leapfrog-steps", "3", "--latent-dim", "4", "--hidden", "32",
                 "--epochs", "3", "--out", str(out), "--quiet", "--threads", "1"]) == 0
    method, cfg, meta = load_method(out, "last")
    logged = meta["history"][-1]["valid_elbo"]
    valid = load_dataset(cfg.dataset).split("valid")
    again = validation_bound(method, valid, cfg, meta["epoch"], torch.device("cpu"), False)
    assert again == pytest.approx(logged, abs=1e-6)
    with torch.no_grad():                            # other step sizes give another bound: the state matters
        method.state.log_step.add_(math.log(5.0))
    assert abs(validation_bound(method, valid, cfg, meta["epoch"], torch.device("cpu"), False) - logged) > 1e-3
