"""Deep sigmoid belief networks: settings, the model, exact enumeration, the k-sample evaluation, and every
binary-latent method trained from the API and the CLI on one- and multi-layer SBNs."""

import json
import math

import pytest
import torch

import varinf
from test_sbn import _one_thread  # noqa: F401  (autouse: one intra-op thread for the tiny models)
from varinf.cli import main
from varinf.config import make_config
from varinf.enumeration import (all_binary, exact_encoder_elbo, exact_iwae_bound, exact_log_marginal)
from varinf.errors import ConfigError
from varinf.evaluate import evaluate_model
from varinf.families import LayeredBernoulli
from varinf.infer import METHODS
from varinf.models import SBN, SBNConfig
from varinf.refinement import AdaptiveImportanceSampling
from varinf.training import load_model, method_for

NEW = ("vimco", "arm", "disarm", "gumbel", "gumbel-st")


def deep(widths=(3, 2), d=6, hidden=(), seed=0):
    torch.manual_seed(seed)
    model = SBN(SBNConfig(data_dim=d, latent_dim=widths, hidden=hidden)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)
    return model


def binary_x(b=4, d=6, seed=1):
    return torch.bernoulli(torch.full((b, d), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(seed))


# ---- settings ---------------------------------------------------------------------------------------------
def test_latent_dim_list_is_a_deep_sbn_and_round_trips():
    cfg = make_config(model="sbn", method="arm", latent_dim=[200, 200, 200])
    assert cfg.latent_dim == (200, 200, 200)
    assert json.loads(json.dumps(cfg.to_dict()))["latent_dim"] == [200, 200, 200]
    assert make_config(model="sbn", latent_dim=[7], method="arm").latent_dim == 7       # one entry = one layer
    with pytest.raises(ConfigError, match=r"latent_dim \[20, 10\] lists several stochastic layers.*--model mlp"):
        make_config(model="mlp", latent_dim=[20, 10])
    with pytest.raises(ConfigError, match="latent_dim must be a list of integers >= 1"):
        make_config(model="sbn", method="arm", latent_dim=[20, 0])
    with pytest.raises(ConfigError, match="method 'mean-pass' trains bernoulli latents but model 'sbn' has "
                                          "layered-bernoulli latents"):
        make_config(model="sbn", method="mean-pass", latent_dim=[4, 4])
    with pytest.raises(ConfigError, match="vimco needs samples >= 2"):
        method_for(make_config(model="sbn", method="vimco", samples=1), deep(), 6)
    with pytest.raises(ConfigError, match="temperature must be a finite number > 0"):
        make_config(model="sbn", method="gumbel", temperature=0)


def test_every_new_method_has_its_registry_defaults():
    for name in NEW:
        cfg = make_config(model="sbn", method=name).resolved()
        assert cfg.samples == METHODS[name].defaults["samples"]
    assert make_config(model="sbn", method="gumbel").resolved().temperature == 0.5
    assert make_config(model="sbn", method="arm").resolved().temperature is None                # no relaxation: not used


# ---- the model and exact enumeration -----------------------------------------------------------------------
@pytest.mark.parametrize("hidden", [(), (5,)], ids=["linear", "nonlinear"])
def test_deep_sbn_is_a_normalised_model_with_a_normalised_layered_encoder(hidden):
    model = deep(hidden=hidden)
    assert isinstance(model.family, LayeredBernoulli) and model.latent_dim == 5
    assert len(model.upper_encoders) == 1 and len(model.upper_decoders) == 1
    xs = all_binary(6, torch.float64)
    torch.testing.assert_close(exact_log_marginal(model, xs).exp().sum(), torch.tensor(1.0, dtype=torch.float64))
    x = binary_x()
    states = all_binary(5, torch.float64)[:, None, :].expand(-1, x.shape[0], -1)
    q = model.family.log_prob(model.encode(x), states).exp()                        # (32, B)
    torch.testing.assert_close(q.sum(0), torch.ones(x.shape[0], dtype=torch.float64))
    # φ is exactly the encoder networks, θ the rest
    phi = {id(p) for p in model.inference_parameters()}
    assert phi == {id(p) for m in (model.encoder, model.upper_encoders) for p in m.parameters()}


def test_deep_log_joint_by_hand():
    """log p(x, h) = log p(x|h₁) + log p(h₁|h₂) + log p(h₂) with each factor a product of Bernoullis."""
    model = deep()
    x, h = binary_x(1), torch.tensor([[[1.0, 0.0, 1.0, 0.0, 1.0]]], dtype=torch.float64)
    h1, h2 = h[..., :3], h[..., 3:]

    def bern(logits, v):
        return (v * torch.nn.functional.logsigmoid(logits) + (1 - v) * torch.nn.functional.logsigmoid(-logits)).sum(-1)
    want = bern(model.decoder(h1), x) + bern(model.upper_decoders[0](h2), h1) + bern(model.prior_logits, h2)
    torch.testing.assert_close(model.log_joint(x, h), want)
    with pytest.raises(ConfigError, match="2-layer SBN's prior p\\(h\\) is not a factorial"):
        model.prior()


def test_ancestral_samples_follow_the_model():
    """Frequencies of (h, x) from sample_joint match p(x, h) by enumeration (chi-square scale)."""
    model = deep(widths=(1, 1), d=2)
    h, x = model.sample_joint(20000, torch.Generator().manual_seed(0))
    code = (torch.cat([h, x], -1) * torch.tensor([8.0, 4.0, 2.0, 1.0])).sum(-1).long()
    freq = torch.bincount(code, minlength=16).double() / 20000
    states = all_binary(4, torch.float64)                                             # bit j = column j
    hh, xx = states[:, :2], states[:, 2:]
    p = model.log_joint(xx, hh.unsqueeze(0))[0].exp().detach()                        # (16,) in (h, x) order
    order = (states * torch.tensor([8.0, 4.0, 2.0, 1.0], dtype=torch.float64)).sum(-1).long()
    want = torch.zeros(16, dtype=torch.float64)
    want[order] = p
    se = (want * (1 - want) / 20000).sqrt()
    assert ((freq - want).abs() <= 4.5 * se + 1e-9).all()


def test_exact_bounds_are_ordered_and_the_evaluation_converges_to_log_px():
    model, x = deep(), binary_x()
    elbo, log_px = exact_encoder_elbo(model, x), exact_log_marginal(model, x)
    l1, l2, l3 = (exact_iwae_bound(model, x, k) for k in (1, 2, 3))
    torch.testing.assert_close(l1, elbo)
    assert (elbo < l2).all() and (l2 < l3).all() and (l3 < log_px).all()              # Burda et al. Thm. 1
    out = evaluate_model(model, x, nll_samples=20000, batch_size=2, seed=0)           # the k-sample NLL path
    assert (out["log_px"] - log_px.detach()).abs().max() < 0.02
    assert (out["elbo"] - elbo.detach()).abs().max() < 0.05
    # with test-time refinement: AVI on every layer (q̃ factorial over all units) is a proposal for log p(x) too
    refined = evaluate_model(model, x, nll_samples=20000, batch_size=2, seed=0,
                             refiner=AdaptiveImportanceSampling(3, samples=50, rate=0.5))
    assert (refined["log_px"] - log_px.detach()).abs().max() < 0.02


# ---- training from the API and the CLI ------------------------------------------------------------------------
@pytest.mark.parametrize("name", NEW)
def test_new_methods_train_a_deep_sbn_from_the_cli_and_the_api(name, tmp_path):
    """``varinf train --model sbn --method M`` needs no method-specific flag; the run loads and evaluates."""
    assert main(["train", "--model", "sbn", "--method", name, "--out", str(tmp_path / "cli"), "--epochs", "1",
                 "--latent-dim", "8,4", "--hidden", "", "--threads", "1", "--quiet"]) == 0
    model, cfg, _ = load_model(tmp_path / "cli")
    assert cfg.latent_dim == (8, 4) and model.widths == (8, 4)
    result = varinf.train(make_config(model="sbn", method=name, latent_dim=6, hidden=(), epochs=1, threads=1),
                          tmp_path / "api", progress=False)
    assert math.isfinite(result.best_valid_elbo)
    assert main(["eval", str(tmp_path / "cli"), "--nll-samples", "20", "--subset", "20", "--quiet"]) == 0


@pytest.mark.parametrize("name", ["mpvi", "stvi", "avi", "nvil", "reinforce", "wake-sleep"])
def test_refined_em_and_score_function_methods_train_a_deep_sbn(name, tmp_path):
    cfg = make_config(model="sbn", method=name, latent_dim=[6, 3], hidden=(), epochs=1, threads=1,
                      refine_steps=2 if name in ("mpvi", "stvi", "avi") else None, refine_samples=4)
    result = varinf.train(cfg, tmp_path, progress=False)
    assert math.isfinite(result.best_valid_elbo)
