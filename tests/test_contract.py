"""The model contract, a user's own model through varinf.train, old checkpoints, and examples/custom_model.py."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import varinf
from varinf.checkpoint import encode_rng_state, read_checkpoint, save_checkpoint
from varinf.config import make_config
from varinf.contract import AmortizedModel, check_amortized
from varinf.data import Dataset
from varinf.errors import CheckpointError, ConfigError
from varinf.families import GAUSSIAN
from varinf.infer import METHODS, make_optimizer
from varinf.training import _WithMethodState, build_method

REPO = Path(__file__).resolve().parents[1]


def example():
    spec = importlib.util.spec_from_file_location("custom_model", REPO / "examples" / "custom_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ex():
    return example()


def test_check_amortized_names_what_is_missing_or_wrong():
    class NoEncoder(nn.Module):
        family = GAUSSIAN

        def prior(self): ...

    with pytest.raises(ConfigError, match="missing encode, generative_parameters"):
        check_amortized(NoEncoder())

    class Base(AmortizedModel):
        family = GAUSSIAN

        def prior(self): ...

        def encode(self, x): ...

    class Overlap(Base):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Linear(2, 2)

        def generative_parameters(self):
            return list(self.encoder.parameters())

    with pytest.raises(ConfigError, match="both generative"):
        check_amortized(Overlap())

    class Loose(Base):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Linear(2, 2)
            self.extra = nn.Linear(2, 2)

        def generative_parameters(self):
            return []

    with pytest.raises(ConfigError, match="neither in generative"):
        check_amortized(Loose())


GAUSSIAN_METHODS = sorted(name for name, spec in METHODS.items() if "gaussian" in spec.families
                          and name != "wake-sleep")


@pytest.mark.parametrize("method", GAUSSIAN_METHODS)
def test_a_user_model_trains_with_every_method_of_its_family(tmp_path, ex, method):
    torch.manual_seed(0)
    data = ex.digits_grey_levels()
    model = ex.GaussianDecoderVAE(data.dim, latent_dim=2, hidden=16)
    cfg = make_config(model="custom", method=method, refine_steps=2, refine_samples=2, samples=2, epochs=2,
                      lr=3e-3, batch_size=200, threads=1)
    result = varinf.train(cfg, tmp_path / method, model=model, data=data, progress=False)
    assert result.epochs_run == 2 and all(torch.isfinite(torch.tensor(h["valid_elbo"])) for h in result.history)
    config = json.loads((tmp_path / method / "config.json").read_text())
    assert config["model_kind"] == "custom" and config["model"]["class"].endswith("GaussianDecoderVAE")
    fresh = ex.GaussianDecoderVAE(data.dim, latent_dim=2, hidden=16)
    varinf.load_weights(fresh, tmp_path / method)
    with pytest.raises(varinf.CheckpointError, match="load_weights"):
        varinf.load_model(tmp_path / method)


def test_user_model_errors_are_one_line(tmp_path, ex):
    data = ex.digits_grey_levels()
    model = ex.GaussianDecoderVAE(data.dim)
    with pytest.raises(ConfigError, match="sample_joint"):
        varinf.train(make_config(model="custom", method="wake-sleep", epochs=1), tmp_path / "ws", model=model,
                     data=data)
    with pytest.raises(ConfigError, match="bernoulli latents; GaussianDecoderVAE has gaussian"):
        varinf.train(make_config(model="custom", method="avi", epochs=1), tmp_path / "avi", model=model, data=data)
    with pytest.raises(ConfigError, match="data=varinf.data.Dataset"):
        varinf.train(make_config(model="custom", epochs=1), tmp_path / "x", model=model, data=data.train)
    with pytest.raises(ConfigError, match="pass model="):
        varinf.train(make_config(model="custom", epochs=1), tmp_path / "y")
    with pytest.raises(ConfigError, match="takes a TrainConfig"):
        varinf.train({"epochs": 1}, tmp_path / "z")


@pytest.mark.parametrize("legacy", [("model",), ("decoder", "encoder")], ids=["one-optimizer", "decoder-encoder"])
def test_a_checkpoint_whose_optimizers_do_not_fit_the_method_is_refused(tmp_path, legacy):
    """Optimizer names other than the method's groups (the per-method layout of a development version that was
    never released) are a one-line CheckpointError on resume; the weights are not loaded half-way."""
    cfg = make_config(dataset="digits", hidden=(8,), latent_dim=2, epochs=2, patience=0, threads=1,
                      method="vae" if legacy == ("model",) else "gbvi", refine_steps=1, refine_samples=1, samples=1)
    dataset, model, method = build_method(cfg, torch.device("cpu"))
    named = {"model": list(model.parameters()), "decoder": list(model.decoder.parameters()),
             "encoder": list(model.encoder.parameters())}
    old = {name: make_optimizer(named[name], cfg.optimizer, cfg.lr) for name in legacy}
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"train": cfg.to_dict()}))
    meta = {"config": cfg.to_dict(), "model": model.config.to_dict(), "model_kind": "vae", "epoch": 0,
            "history": [{"epoch": 1, "train_elbo": -50.0, "valid_elbo": -50.0, "seconds": 1.0}],
            "best_valid_elbo": -50.0, "best_epoch": 1, "bad_epochs": 0, "stopped_early": False,
            "rng_state": encode_rng_state(torch.Generator().manual_seed(0).get_state())}
    save_checkpoint(run / "checkpoints", "last", model=_WithMethodState(model, None), optimizers=old, meta=meta)
    with pytest.raises(CheckpointError, match="do not fit method") as caught:
        varinf.train(cfg, run, resume=True, progress=False)
    assert "\n" not in str(caught.value) and str(sorted(legacy)) in str(caught.value)
    assert set(read_checkpoint(run / "checkpoints", "last")[1]["optimizers"]) == set(legacy)   # left as it was


def test_custom_model_example_runs(ex, capsys):
    summary = ex.main(["--epochs", "3", "--refine-steps", "3", "--nll-samples", "50"])
    assert summary["test_bound"][0] <= -summary["test_nll"][0] + 3 * summary["test_nll"][1]
    assert summary["amortization_gap"][0] > -3 * summary["amortization_gap"][1]
    out = capsys.readouterr().out
    assert "test_bound_refined" in out and "test_nll" in out
