"""Tests that pin the algorithm, each through the code path training or evaluation runs (issue #20 item 2).

Exact references where one exists: a k = 1 log-mean-exp is the single log weight; HVI's leapfrog on a
quadratic potential against a trajectory computed by hand; the refiners' step rules against
torch.optim on the same gradients; early stopping and best-epoch selection on a scripted sequence of
validation bounds in the real loop; fresh, reproducible validation noise; the parameter shapes of
every shipped architecture; the standard-error formulas of ``varinf eval``.
"""

import json
import math
from types import SimpleNamespace

import pytest
import torch

import varinf.evaluate
import varinf.training
from test_methods_exact import AmortizedLinearGaussian
from varinf import make_config, train
from varinf.evaluate import evaluate_model, evaluate_run
from varinf.families import GAUSSIAN, Posterior
from varinf.infer import AEVB, HVI
from varinf.models.linear_gaussian import LinearGaussian
from varinf.objectives import log_weights
from varinf.refinement import GaussianGradient, MeanPassGradient
from varinf.training import build_model, load_model, model_config

torch.set_num_threads(1)
TINY = dict(dataset="digits", hidden=(8,), latent_dim=2, batch_size=300, threads=1, seed=11)


# ---- k = 1: the log-mean-exp of one log weight is that log weight ---------------------------------------
def test_one_importance_sample_gives_log_px_equal_to_the_elbo_exactly(tmp_path):
    """``varinf eval`` with k = 1: log p̂(x) = log w = the one-sample ELBO, bit for bit (combine_chunks' 1/k)."""
    run = tmp_path / "run"
    train(make_config(**TINY, epochs=1), run, progress=False)
    model, _, _ = load_model(run)
    x = torch.bernoulli(torch.full((7, 64), 0.3), generator=torch.Generator().manual_seed(0))
    out = evaluate_model(model, x, nll_samples=1, batch_size=3, seed=4)
    assert torch.equal(out["log_px"], out["elbo"])
    # and that one log weight is log p(x, z) − log q(z|x) at the draw the evaluation makes
    gen = varinf.evaluate.batch_generator(4, 0, 0, torch.device("cpu"))          # batch 0's generator
    with torch.no_grad():
        q = model.family.dist(*model.encode(x[:3]))
        assert torch.equal(out["elbo"][:3], log_weights(model, q, x[:3], 1, gen)[0])


# ---- HVI: leapfrog on a quadratic potential, by hand ----------------------------------------------------
def quadratic_model():
    """Factor analysis with two independent latents, each with posterior precision a = 4:
    W = [[1,0],[1,0],[1,0],[0,1],[0,1],[0,1]], b = 0, ψ = 1, so −log p(x, z) = ½ Σ_k 4 (z_k − m_k)² + c
    with m_k = (Σ_{d in block k} x_d) / 4."""
    model = AmortizedLinearGaussian(data_dim=6, latent_dim=2)
    w = torch.zeros(6, 2, dtype=torch.float64)
    w[:3, 0], w[3:, 1] = 1.0, 1.0
    model.lg = LinearGaussian(w, torch.zeros(6), torch.ones(6))
    return model


def test_leapfrog_follows_the_hand_computed_trajectory_on_a_quadratic_potential():
    """One leapfrog step on U(y) = ½ a y², y = z − m, is the linear map (Neal 2011 §5.2.3.3)

        y' = (1 − ε²a/2) y + ε v,   v' = −ε a (1 − ε²a/4) y + (1 − ε²a/2) v.

    Latent 1: a = 4, ε = ½ gives M = [[½, ½], [−3/2, ½]]; from (y, v) = (1, 1): (1, −1), (0, −2),
    (−1, −1).
    Latent 2: a = 4, ε = ¼ gives M = [[7/8, ¼], [−15/16, 7/8]]; from (y, v) = (0, 1): (¼, 7/8), (7/16, 17/32),
    (0.515625, 0.0546875)."""
    model = quadratic_model()
    x = torch.tensor([[1.0, 0.5, 0.5, 0.0, 1.0, 1.0]], dtype=torch.float64)      # m = (0.5, 0.5)
    method = HVI(model, 6, steps=3, samples=1)
    with torch.no_grad():
        method.state.log_step.copy_(torch.tensor([[0.5, 0.25]] * 3, dtype=torch.float64).log())
    z0 = torch.tensor([[[1.5, 0.5]]], dtype=torch.float64)                        # (S, B, K): y₀ = (1, 0)
    v0 = torch.tensor([[[1.0, 1.0]]], dtype=torch.float64)
    z, v, log_p = method.leapfrog(x, z0, v0, create_graph=False)
    m = torch.tensor([0.5, 0.5], dtype=torch.float64)
    torch.testing.assert_close(z[0, 0] - m, torch.tensor([-1.0, 0.515625], dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(v[0, 0], torch.tensor([-1.0, 0.0546875], dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(log_p, model.lg.log_joint(x, z), rtol=0, atol=1e-12)


def test_the_hvi_bound_is_eq_11_on_its_own_draws():
    """L_HVI = log p(x, z_K) + log r(v_K|x, z_K) − log q(z₀|x) − log N(v₀; 0, I), recomputed from the draws."""
    model = quadratic_model()
    x = torch.tensor([[1.0, 0.5, 0.5, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    method = HVI(model, 6, steps=2, samples=3, hidden=(4,), seed=1)
    got = method.bound(x, 3, torch.Generator().manual_seed(8), create_graph=False)
    g = torch.Generator().manual_seed(8)
    params = model.encode(x)
    z0 = GAUSSIAN.draw(params, 3, g)
    v0 = torch.randn(z0.shape, generator=g, dtype=z0.dtype)
    z, v, log_p = method.leapfrog(x, z0, v0, create_graph=False)
    mean, log_std = method.state.reverse_params(x, z)
    log_r = torch.distributions.Normal(mean, log_std.exp()).log_prob(v).sum(-1)
    log_q = torch.distributions.Normal(params[0], params[1].exp()).log_prob(z0).sum(-1) \
        + torch.distributions.Normal(0.0, 1.0).log_prob(v0).sum(-1)
    torch.testing.assert_close(got, (log_p + log_r - log_q).mean(0), rtol=0, atol=1e-10)


# ---- refinement step rules against torch.optim -----------------------------------------------------------
@pytest.mark.parametrize("rule", ["sgd", "adam"])
@pytest.mark.parametrize("refiner_cls", [GaussianGradient, MeanPassGradient])
def test_refiner_step_rule_equals_torch_optim_on_the_same_gradients(rule, refiner_cls):
    """z_1..z_T of ``refiner.iterate`` (what training and eval run) against torch.optim.SGD / Adam (maximize)
    stepping the same objective with the same noise."""
    from test_methods_exact import tiny_sbn
    if refiner_cls is GaussianGradient:
        model, x = quadratic_model(), torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    else:
        model, x = tiny_sbn()
    rate = 0.05
    refiner = refiner_cls(5, rate, rule, samples=2)
    params0 = tuple(p.detach() for p in model.encode(x))
    got = [q.params for q in refiner.iterate(model, Posterior(refiner.family, params0), x,
                                               torch.Generator().manual_seed(3))]

    leaves = [p.clone().requires_grad_() for p in params0]
    opt = (torch.optim.SGD(leaves, lr=rate, maximize=True) if rule == "sgd" else
           torch.optim.Adam(leaves, lr=rate, betas=(0.9, 0.999), eps=1e-8, maximize=True))
    g = torch.Generator().manual_seed(3)
    want = [tuple(p.detach().clone() for p in leaves)]
    for _ in range(5):
        opt.zero_grad()
        refiner.objective(model, Posterior(refiner.family, tuple(leaves)), x, g).sum().backward()
        opt.step()
        want.append(tuple(p.detach().clone() for p in leaves))
    assert len(got) == len(want) == 6
    for a, b in zip(got, want):
        for pa, pb in zip(a, b):
            torch.testing.assert_close(pa, pb, rtol=1e-12, atol=1e-12)


# ---- early stopping and best-epoch selection in the real loop ------------------------------------------
SCRIPT = [-10.0, -9.0, -9.5, -8.0, -8.0, -8.5, -7.0, -6.0]


@pytest.fixture
def scripted_validation(monkeypatch):
    """The loop's validation bound replaced by SCRIPT[epoch]; everything else is the real loop."""
    monkeypatch.setattr(varinf.training, "validation_bound", lambda method, x, cfg, epoch, *a, **k: SCRIPT[epoch])


@pytest.mark.parametrize("patience, epochs_run, best_epoch, stopped", [
    (2, 6, 4, True),          # −8 at epoch 5 ties epoch 4's: not an improvement; epochs 5, 6 without one
    (3, 8, 8, False),         # no 3 epochs in a row without improvement
    (1, 3, 2, True),
    (0, 8, 8, False),         # 0: off
])
def test_early_stopping_and_best_epoch_on_a_scripted_validation_sequence(tmp_path, scripted_validation, patience,
                                                                        epochs_run, best_epoch, stopped):
    run = tmp_path / "run"
    result = train(make_config(**TINY, epochs=8, patience=patience), run, progress=False)
    assert (result.epochs_run, result.best_epoch, result.stopped_early) == (epochs_run, best_epoch, stopped)
    assert result.best_valid_elbo == max(SCRIPT[:epochs_run])
    assert [r["valid_elbo"] for r in result.history] == SCRIPT[:epochs_run]
    best = json.loads((run / "checkpoints" / "best.json").read_text())
    last = json.loads((run / "checkpoints" / "last.json").read_text())
    assert (best["epoch"] + 1, last["epoch"] + 1) == (best_epoch, epochs_run)
    assert last["stopped_early"] is stopped and last["best_epoch"] == best_epoch


def test_early_stopping_counts_across_a_resume(tmp_path, scripted_validation):
    """Stopped after epoch 5 (one bad epoch counted), resumed: the count continues and it stops at epoch 6."""
    run = tmp_path / "run"
    train(make_config(**TINY, epochs=5, patience=2), run, progress=False)
    result = train(make_config(**TINY, epochs=8, patience=2), run, resume=True, progress=False)
    assert (result.epochs_run, result.best_epoch, result.stopped_early) == (6, 4, True)
    again = train(make_config(**TINY, epochs=8, patience=2), run, resume=True, progress=False)
    assert (again.epochs_run, again.best_epoch, again.stopped_early) == (6, 4, True)   # stopped, it stays so
    more = train(make_config(**TINY, epochs=8, patience=3), run, resume=True, progress=False)
    assert (more.epochs_run, more.best_epoch, more.stopped_early) == (8, 8, False)   # a larger patience applies


# ---- each epoch's validation noise: fresh and reproducible ------------------------------------------------
ENCODER_BOUND = AEVB.validation_bound


def validation_noise(monkeypatch, tmp_path, name, **settings) -> list:
    """The state of the generator each epoch's validation bound starts from, recorded inside the real loop."""
    seen = []

    def recording(self, x, num_samples, generator):
        seen.append(generator.get_state().clone())
        return ENCODER_BOUND(self, x, num_samples, generator)
    monkeypatch.setattr(AEVB, "validation_bound", recording)
    train(make_config(**{**TINY, "epochs": 3, "patience": 0, **settings}), tmp_path / name, progress=False,
          resume=(tmp_path / name).exists())
    return seen


def test_validation_noise_is_fresh_each_epoch_and_reproducible(tmp_path, monkeypatch):
    a = validation_noise(monkeypatch, tmp_path, "a")
    assert len(a) == 3 and all(not torch.equal(a[i], a[j]) for i in range(3) for j in range(i))   # fresh
    assert all(torch.equal(s, t) for s, t in zip(a, validation_noise(monkeypatch, tmp_path, "b")))  # reproducible
    # not drawn from the training stream: another minibatch size (other training draws), the same noise
    other = validation_noise(monkeypatch, tmp_path, "c", batch_size=100)
    assert all(torch.equal(s, t) for s, t in zip(a, other))
    # and a resumed run draws the noise of an unbroken one
    part = validation_noise(monkeypatch, tmp_path, "d", epochs=1)
    rest = validation_noise(monkeypatch, tmp_path, "d")
    assert all(torch.equal(s, t) for s, t in zip(a, part + rest))
    assert not torch.equal(validation_noise(monkeypatch, tmp_path, "e", seed=12)[0], a[0])    # seeded by the run


# ---- parameter shapes of every shipped architecture ---------------------------------------------------------
MNIST = SimpleNamespace(dim=784, image_shape=(28, 28))
SHAPES = {
    # Hjelm et al. 2015 Table 1 VAE: 784-500-200, the encoder's last layer gives (μ, log σ) = 2 × 200
    "mlp": (dict(model="mlp"), [
        ("encoder.net.0.weight", (500, 784)), ("encoder.net.0.bias", (500,)),
        ("encoder.net.2.weight", (400, 500)), ("encoder.net.2.bias", (400,)),
        ("decoder.net.0.weight", (500, 200)), ("decoder.net.0.bias", (500,)),
        ("decoder.net.2.weight", (784, 500)), ("decoder.net.2.bias", (784,))]),
    # 3×3 conv 1→32 at 28×28, then 4×4 stride-2 convs while the side stays even: 32→64 (14×14), 64→64 (7×7),
    # 7·7·64 = 3136 features, dense 500, 2 × 20; the decoder mirrors it (ConvTranspose2d weights are (in, out, k, k))
    "cnn": (dict(model="cnn", latent_dim=20), [
        ("encoder.conv.0.weight", (32, 1, 3, 3)), ("encoder.conv.0.bias", (32,)),
        ("encoder.conv.2.weight", (64, 32, 4, 4)), ("encoder.conv.2.bias", (64,)),
        ("encoder.conv.4.weight", (64, 64, 4, 4)), ("encoder.conv.4.bias", (64,)),
        ("encoder.head.0.weight", (500, 3136)), ("encoder.head.0.bias", (500,)),
        ("encoder.head.2.weight", (40, 500)), ("encoder.head.2.bias", (40,)),
        ("decoder.head.0.0.weight", (500, 20)), ("decoder.head.0.0.bias", (500,)),
        ("decoder.head.0.2.weight", (3136, 500)), ("decoder.head.0.2.bias", (3136,)),
        ("decoder.deconv.0.weight", (64, 64, 4, 4)), ("decoder.deconv.0.bias", (64,)),
        ("decoder.deconv.2.weight", (64, 32, 4, 4)), ("decoder.deconv.2.bias", (32,)),
        ("decoder.deconv.4.weight", (1, 32, 3, 3)), ("decoder.deconv.4.bias", (1,))]),
    # Hjelm et al. 2015 Table 2 SBN 200-784 (linear): prior logits, recognition 784→200, generation 200→784
    "sbn": (dict(model="sbn", method="nvil", hidden=()), [
        ("prior_logits", (200,)), ("encoder.0.weight", (200, 784)), ("encoder.0.bias", (200,)),
        ("decoder.0.weight", (784, 200)), ("decoder.0.bias", (784,))]),
    # Table 2's 200-240-784 SBN (one deterministic hidden layer of 240 each way)
    "sbn-240": (dict(model="sbn", method="nvil", hidden=(240,)), [
        ("prior_logits", (200,)), ("encoder.0.weight", (240, 784)), ("encoder.0.bias", (240,)),
        ("encoder.2.weight", (200, 240)), ("encoder.2.bias", (200,)),
        ("decoder.0.weight", (240, 200)), ("decoder.0.bias", (240,)),
        ("decoder.2.weight", (784, 240)), ("decoder.2.bias", (784,))]),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_parameter_shapes_of_every_shipped_architecture(name):
    settings, shapes = SHAPES[name]
    model = build_model(model_config(make_config(dataset="binarized-mnist", **settings), MNIST), 0, torch.device("cpu"))
    assert [(n, tuple(p.shape)) for n, p in model.named_parameters()] == shapes


# ---- the standard errors of varinf eval -------------------------------------------------------------------
def test_eval_reports_the_standard_error_of_the_mean_over_datapoints(tmp_path, monkeypatch):
    """s.e. = sd / √n with the n − 1 sample sd, and the amortisation gap's s.e. paired over datapoints."""
    run = tmp_path / "run"
    train(make_config(**TINY, epochs=1), run, progress=False)
    elbo = torch.tensor([-1.0, -2.0, -3.0, -4.0], dtype=torch.float64)
    scripted = {None: {"elbo": elbo, "log_px": elbo + 0.5},
                "refined": {"elbo": elbo + torch.tensor([1.0, 1.0, 2.0, 5.0], dtype=torch.float64),
                            "log_px": elbo + 1.0}}
    monkeypatch.setattr(varinf.evaluate, "evaluate_model",
                        lambda model, x, refiner=None, **kw: scripted[None if refiner is None else "refined"])
    r = evaluate_run(run, nll_samples=2, subset=4, refine_steps=2, write=False)
    se = math.sqrt(5 / 3) / 2                                       # sd of (1, 2, 3, 4) with n − 1, over √4
    assert (r["test_elbo"], r["test_nll"]) == (-2.5, 2.0)
    assert r["test_elbo_stderr"] == pytest.approx(se, rel=1e-12)
    assert r["test_nll_stderr"] == pytest.approx(se, rel=1e-12)
    assert (r["test_elbo_refined"], r["test_nll_refined"]) == (-0.25, 1.5)
    assert r["test_elbo_refined_stderr"] == pytest.approx(math.sqrt(11 / 12) / 2, rel=1e-12)   # of (0, −1, −1, 1)
    assert r["amortization_gap"] == 2.25
    # paired: the s.e. of the per-point gaps (1, 1, 2, 5), sd² = 43/12; unpaired would be √(5/12 + 11/48)
    assert r["amortization_gap_stderr"] == pytest.approx(math.sqrt(43 / 12) / 2, rel=1e-12)
