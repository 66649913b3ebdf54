"""The observation models p(x|z) against closed-form densities, and the likelihood as a setting."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from varinf.cli import main
from varinf.config import TrainConfig
from varinf.data import load_dataset
from varinf.errors import ConfigError, DataError
from varinf.likelihoods import (MIN_VARIANCE, VARIANCE_RATE, BernoulliLikelihood, GaussianLikelihood, make_likelihood,
                                needs_binary_data)
from varinf.models import VAE, VAEConfig
from varinf.training import load_model, train

torch.set_num_threads(1)


def _out_and_data(d=6, s=3, b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = torch.randn(s, b, d, generator=g, dtype=torch.float64)              # η: (S, B, D)
    x = torch.rand(b, d, generator=g, dtype=torch.float64)                    # grey levels (B, D)
    return out, x


def test_bernoulli_log_prob_and_mean_are_scipys():
    out, x = _out_and_data()
    x = (x > 0.5).double()
    lik = BernoulliLikelihood()
    p = torch.sigmoid(out).numpy()
    expected = stats.bernoulli.logpmf(x.numpy()[None], p).sum(-1)           # (S, B)
    np.testing.assert_allclose(lik.log_prob(x, out).numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(lik.mean(out).numpy(), p)
    assert lik.binary_data and needs_binary_data("bernoulli")


@pytest.mark.parametrize("per_pixel", [False, True])
def test_gaussian_log_prob_is_scipys_with_the_floored_variance(per_pixel):
    out, x = _out_and_data()
    lik = GaussianLikelihood(x.shape[1], per_pixel=per_pixel).double()
    assert lik.log_var_scaled.shape == ((x.shape[1],) if per_pixel else (1,))
    with torch.no_grad():
        lik.log_var_scaled.copy_(torch.linspace(-3, 1, lik.log_var_scaled.numel(), dtype=torch.float64) / VARIANCE_RATE)
    s = torch.linspace(-3, 1, lik.log_var_scaled.numel(), dtype=torch.float64)           # s = κ u
    var = (MIN_VARIANCE + s.exp()).numpy()
    expected = stats.norm.logpdf(x.numpy()[None], loc=out.numpy(), scale=np.sqrt(var)).sum(-1)
    np.testing.assert_allclose(lik.log_prob(x, out).detach().numpy(), expected, rtol=1e-10)
    assert torch.equal(lik.mean(out), out)
    assert not lik.binary_data and not needs_binary_data(lik.name)
    assert lik.name == ("gaussian-pixel" if per_pixel else "gaussian-global")


def test_the_variance_floor_keeps_the_density_finite():
    """A pixel fitted exactly (x = η) with the learned variance driven to 0 stays at the floor's density."""
    x = torch.zeros(2, 3, dtype=torch.float64)
    lik = GaussianLikelihood(3, per_pixel=True).double()
    with torch.no_grad():
        lik.log_var_scaled.fill_(-1e4)                                          # exp(κ u) = 0 in float64
    value = lik.log_prob(x, x.unsqueeze(0))
    assert torch.isfinite(value).all()
    assert torch.allclose(value, torch.full_like(value, -1.5 * math.log(2 * math.pi * MIN_VARIANCE)))


def test_vae_likelihoods_and_their_parameters():
    for name, extra in (("bernoulli", 0), ("gaussian-global", 1), ("gaussian-pixel", 16)):
        for arch in ("mlp", "cnn"):
            model = VAE(VAEConfig(data_dim=16, latent_dim=2, hidden=(8,), architecture=arch, image_shape=(4, 4),
                                  channels=(2,), likelihood=name))
            assert model.likelihood.name == name
            theta = {id(p) for p in model.generative_parameters()}
            assert all(id(p) in theta for p in model.likelihood.parameters())     # the variance is θ
            assert sum(p.numel() for p in model.likelihood.parameters()) == extra
            z = torch.randn(3, 5, 2)
            x = torch.rand(5, 16)
            assert model.log_likelihood(x, z).shape == (3, 5)
            assert torch.allclose(model.log_likelihood(x, z), model.likelihood.log_prob(x, model.decode(z)))
            assert model.sample(4).shape == (4, 16)
    assert VAEConfig().likelihood == "bernoulli"
    with pytest.raises(ConfigError, match="unknown likelihood 'poisson'"):
        VAEConfig(likelihood="poisson")
    with pytest.raises(ConfigError, match="likelihood must be one of"):
        make_likelihood("poisson", 3)


def test_train_config_rule():
    assert TrainConfig().likelihood == "bernoulli"
    assert TrainConfig(likelihood="Gaussian-Pixel").likelihood == "gaussian-pixel"
    with pytest.raises(ConfigError, match=r"likelihood must be one of \['bernoulli', 'gaussian-global', "
                                          r"'gaussian-pixel'\], got 'gauss'"):
        TrainConfig(likelihood="gauss")
    with pytest.raises(ConfigError, match="likelihood 'gaussian-global' is for --model mlp or cnn"):
        TrainConfig(model="sbn", method="wake-sleep", likelihood="gaussian-global")


def _grey_file(tmp_path: Path) -> Path:
    g = np.random.default_rng(0)
    path = tmp_path / "grey.npy"
    np.save(path, g.uniform(0, 1, size=(60, 16)).astype(np.float32))
    return path


def test_the_data_check_follows_the_likelihood(tmp_path, capsys):
    path = _grey_file(tmp_path)
    common = ["train", "--dataset", str(path), "--latent-dim", "2", "--hidden", "8", "--epochs", "1",
              "--batch-size", "20", "--quiet", "--threads", "1"]
    assert main(common + ["--out", str(tmp_path / "bern")]) == 2                # grey levels, Bernoulli: refused
    assert "binary" in capsys.readouterr().err
    assert main(common + ["--out", str(tmp_path / "gauss"), "--likelihood", "gaussian-pixel"]) == 0
    model, cfg, _ = load_model(tmp_path / "gauss")
    assert cfg.likelihood == "gaussian-pixel" and model.likelihood.log_var_scaled.shape == (16,)
    assert main(["eval", str(tmp_path / "gauss"), "--nll-samples", "10", "--quiet"]) == 0   # the test split too
    result = json.loads((tmp_path / "gauss" / "eval.json").read_text())
    assert math.isfinite(result["test_nll"])
    assert (result["likelihood"], result["unit"]) == ("gaussian-pixel", "nats of a density")   # eval names its unit
    assert "not comparable with a Bernoulli" in result["unit_note"]
    assert '"unit": "nats of a density"' in capsys.readouterr().out               # and so does the printed summary
    with pytest.raises(DataError, match="binary"):
        train(TrainConfig(dataset=str(path), latent_dim=2, hidden=(8,), epochs=1), tmp_path / "api", progress=False)


def test_checkpoints_without_the_field_load_as_bernoulli(tmp_path):
    """Runs written before the likelihood setting existed hold no ``likelihood`` key: they are Bernoulli."""
    run = tmp_path / "old"
    train(TrainConfig(latent_dim=2, hidden=(8,), epochs=1, batch_size=200), run, progress=False)
    for name in ("best", "last"):
        path = run / "checkpoints" / f"{name}.json"
        meta = json.loads(path.read_text())
        del meta["config"]["likelihood"], meta["model"]["likelihood"]
        path.write_text(json.dumps(meta))
    model, cfg, _ = load_model(run)
    assert cfg.likelihood == "bernoulli" and isinstance(model.likelihood, BernoulliLikelihood)


def test_mnist_t10k_split(shared_data_dir):
    d = load_dataset("mnist-t10k-split", shared_data_dir)
    assert d.name == "mnist-t10k-split" and d.image_shape == (28, 28) and not d.binary
    sizes = [d.split(s).shape[0] for s in ("train", "valid", "test")]
    assert sizes == [8000, 1000, 1000]
    full = load_dataset("mnist", shared_data_dir).test                          # the same 10,000 images
    rows = torch.cat([d.train, d.valid, d.test])
    assert torch.allclose(rows.sum(0), full.sum(0)) and rows.shape == full.shape
    assert sorted(torch.cat([d.labels[s] for s in ("train", "valid", "test")]).tolist()) == sorted(
        load_dataset("mnist", shared_data_dir).labels["test"].tolist())
    assert load_dataset("mnist-t10k-split", shared_data_dir, binarize=True).dynamic_binarize


def _grey_batch(n=50, d=16, seed=0):
    """Grey levels with a different spread per pixel and one constant pixel (a never-inked border pixel)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g) * torch.linspace(0.05, 1, d)                 # (N, D)
    x[:, 0] = 0.0
    return x


@pytest.mark.parametrize("per_pixel", [False, True])
@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_gaussian_vae_starts_at_the_data_mean_and_variance(per_pixel, arch):
    x = _grey_batch()
    name = "gaussian-pixel" if per_pixel else "gaussian-global"
    model = VAE(VAEConfig(data_dim=16, latent_dim=2, hidden=(8,), architecture=arch, image_shape=(4, 4),
                          channels=(2,), likelihood=name))
    model.initialise_from_data(x)
    eta0 = model.decode(torch.zeros(1, 2))[0]                                       # η(0): (D,)
    if arch == "mlp":                                                                # a bias per pixel
        torch.testing.assert_close(eta0, x.mean(0), rtol=0, atol=1e-6)
    else:                                                                            # one bias for all pixels
        torch.testing.assert_close(eta0.mean(), x.mean(), rtol=0, atol=1e-6)
    v = x.var(0, unbiased=False) if per_pixel else x.var(0, unbiased=False).mean().reshape(1)
    expected = MIN_VARIANCE + torch.clamp(v, min=MIN_VARIANCE)                       # σ²_min + max(v, σ²_min)
    torch.testing.assert_close(model.likelihood.variance().detach(), expected, rtol=1e-5, atol=0)
    if per_pixel:
        assert model.likelihood.variance()[0].item() == pytest.approx(2 * MIN_VARIANCE)   # the constant pixel


def test_a_bernoulli_vae_is_left_as_built():
    """The data initialisation is for Gaussian likelihoods only: Bernoulli runs stay bit-identical."""
    model = VAE(VAEConfig(data_dim=16, latent_dim=2, hidden=(8,)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.initialise_from_data((_grey_batch() > 0.3).float())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_training_starts_from_the_data_initialisation(shared_data_dir):
    """``varinf train``'s own model construction (build_method) applies the initialisation."""
    from varinf.training import build_method
    cfg = TrainConfig(dataset="mnist-t10k-split", data_dir=shared_data_dir, likelihood="gaussian-pixel",
                      latent_dim=2, hidden=(8,))
    dataset, model, _ = build_method(cfg, torch.device("cpu"))
    train_x = dataset.split("train")
    expected = MIN_VARIANCE + train_x.var(0, unbiased=False).clamp_min(MIN_VARIANCE)
    torch.testing.assert_close(model.likelihood.variance().detach(), expected, rtol=1e-5, atol=0)
    torch.testing.assert_close(model.decode(torch.zeros(1, 2))[0], train_x.mean(0), rtol=0, atol=1e-5)


def test_one_adam_step_moves_the_log_variance_by_kappa_times_lr():
    """s = κ u: Adam's first step moves u by lr (sign of the gradient), so log(σ² − σ²_min) moves by κ·lr."""
    lik = GaussianLikelihood(4, per_pixel=True).double()
    x = torch.zeros(8, 4, dtype=torch.float64)
    out = torch.full((1, 8, 4), 0.1, dtype=torch.float64)                           # residual² 0.01 < σ² = 1
    opt = torch.optim.Adam(lik.parameters(), lr=1e-3)
    s0 = (lik.variance() - MIN_VARIANCE).log().detach()
    (-lik.log_prob(x, out).sum()).backward()
    opt.step()
    s1 = (lik.variance() - MIN_VARIANCE).log().detach()
    torch.testing.assert_close(s1 - s0, torch.full((4,), -VARIANCE_RATE * 1e-3, dtype=torch.float64),
                               rtol=1e-6, atol=0)
    assert VARIANCE_RATE == 100.0


def test_units_of_each_likelihood():
    assert BernoulliLikelihood().unit == "nats of a probability"
    assert GaussianLikelihood(3, per_pixel=True).unit == "nats of a density"
    assert "not comparable with a Bernoulli" in GaussianLikelihood(3, per_pixel=False).unit_note


def test_clipping_note_counts_what_the_grey_scale_hides():
    from varinf.plotting import clipping_note
    assert clipping_note(np.array([0.0, 0.5, 1.0])) == ""
    assert clipping_note(np.array([-0.5, 0.2, 0.4, 2.0])) == (
        "\n50.0% of pixel values outside [0, 1] (range -0.5 to 2), shown clipped to [0, 1]")


def test_the_samples_figure_says_when_it_clips(tmp_path, monkeypatch):
    """A Gaussian VAE whose means leave [0, 1]: the samples figure's title says how many values are clipped."""
    import matplotlib.axes
    from varinf import plotting
    titles = []
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title", lambda self, t, *a, **k: titles.append(t))
    model = VAE(VAEConfig(data_dim=16, latent_dim=2, hidden=(8,), likelihood="gaussian-pixel"))
    with torch.no_grad():
        model.decoder.net[-1].bias.fill_(3.0)                                           # means far above 1
    plotting.plot_samples(model, tmp_path / "s.png", (4, 4), n=3)
    means = model.sample(9, generator=torch.Generator().manual_seed(0)).numpy()
    assert titles == ["generated: E[x|z], z ~ N(0, I)" + plotting.clipping_note(means)]
    assert "shown clipped to [0, 1]" in titles[0]
