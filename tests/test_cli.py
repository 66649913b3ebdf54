"""End-to-end: varinf train → eval → plot on digits, resume after a kill, and every bad input."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import varinf
from varinf import make_config, train
from varinf.checkpoint import read_checkpoint
from varinf.cli import main
from varinf.errors import CheckpointError

FAST = ["--dataset", "digits", "--hidden", "64", "--latent-dim", "2", "--quiet"]


def run_cli(*args) -> int:
    return main([str(a) for a in args])


def model_tensors(run_dir: Path, which: str = "last") -> dict:
    return read_checkpoint(run_dir / "checkpoints", which)[0]


def assert_identical(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def digest(path: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*")) if p.is_file()}


def test_train_eval_plot_on_digits(tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli("train", *FAST, "--epochs", 8, "--seed", 1, "--out", run) == 0
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == list(range(1, 9))
    assert {"train_elbo", "valid_elbo", "seconds"} <= set(lines[0])
    assert lines[-1]["valid_elbo"] > lines[0]["valid_elbo"]            # it learns
    for name in ("best", "last"):
        meta = json.loads((run / "checkpoints" / f"{name}.json").read_text())
        assert (run / "checkpoints" / meta["weights_file"]).exists()
        assert {"config", "epoch", "history", "rng_state", "weights_sha256"} <= set(meta)
    assert run_cli("eval", run, "--nll-samples", 200, "--quiet") == 0
    result = json.loads((run / "eval.json").read_text())
    assert result["test_elbo"] < 0 < result["test_nll"]
    assert -result["test_nll"] >= result["test_elbo"]                  # log p̂(x) ≥ ELBO (same draws)
    assert result["test_points"] == 300
    assert run_cli("plot", run) == 0
    figures = {p.name for p in (run / "figures").iterdir()}
    assert {"manifold.png", "samples.png", "reconstructions.png", "curves.png", "latent.png"} <= figures
    for p in (run / "figures").iterdir():
        assert p.stat().st_size > 5000


def test_cnn_trains_on_8x8_images(tmp_path):
    run = tmp_path / "cnn"
    assert run_cli("train", "--dataset", "digits", "--model", "cnn", "--hidden", "32", "--latent-dim", 2,
                   "--epochs", 2, "--quiet", "--out", run) == 0
    assert run_cli("eval", run, "--nll-samples", 10, "--quiet") == 0


def test_config_file_and_flags(tmp_path):
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text('[train]\ndataset = "digits"\nlatent_dim = 3\nhidden = [32]\noptimizer = "rmsprop"\n'
                        'lr = 0.003\nepochs = 2\nestimator = "A"\nsamples = 2\n')
    run = tmp_path / "r"
    assert run_cli("train", "--config", cfg_file, "--epochs", 1, "--quiet", "--out", run) == 0
    saved = json.loads((run / "config.json").read_text())["train"]
    assert saved["latent_dim"] == 3 and saved["optimizer"] == "rmsprop" and saved["estimator"] == "A"
    assert saved["epochs"] == 1                                           # the flag wins over the file
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


def test_resume_through_the_api_is_bit_identical(tmp_path):
    cfg = make_config(dataset="digits", hidden=(32,), latent_dim=2, epochs=5, seed=3, patience=0)
    train(cfg, tmp_path / "full", progress=False)
    part = make_config(dataset="digits", hidden=(32,), latent_dim=2, epochs=2, seed=3, patience=0)
    train(part, tmp_path / "split", progress=False)
    train(cfg, tmp_path / "split", resume=True, progress=False)
    assert_identical(model_tensors(tmp_path / "full"), model_tensors(tmp_path / "split"))
    full = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    split = [json.loads(x) for x in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_elbo"] for r in full] == [r["train_elbo"] for r in split]


def test_killed_run_resumes_to_the_same_parameters(tmp_path):
    """SIGKILL a real training process mid-run, resume it, compare with an uninterrupted run."""
    args = [*FAST, "--hidden", "200", "--epochs", "60", "--patience", "0", "--seed", "7"]
    assert run_cli("train", *args, "--out", tmp_path / "ref") == 0
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "varinf", "train", *args, "--out", str(run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run / "checkpoints" / "last.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if last.exists():
            try:
                if json.loads(last.read_text())["epoch"] >= 2:
                    break
            except (json.JSONDecodeError, KeyError):
                pass
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(last.read_text())["epoch"]
    assert killed_at < 59, "the run finished before it could be killed"
    assert run_cli("train", *args, "--resume", "--out", run) == 0
    assert_identical(model_tensors(tmp_path / "ref"), model_tensors(run))
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 60


# ---- bad input: a clear error naming the problem, nothing lost ----------------------------------

def error_of(capsys, *args) -> str:
    assert run_cli(*args) == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("array, needle", [
    (np.zeros((4, 3, 2, 2)), "shape"),
    (np.array([[0.0, np.nan], [1.0, 0.0]] * 10), "NaN"),
    (np.array([[0.0, np.inf], [1.0, 0.0]] * 10), "inf"),
    (np.full((20, 4), 1.5), "[0, 1]"),
    (np.full((20, 4), 0.5), "binar"),
    (np.array([["a", "b"]] * 20), "dtype"),
])
def test_bad_user_data(tmp_path, capsys, array, needle):
    path = tmp_path / "data.npy"
    np.save(path, array)
    err = error_of(capsys, "train", "--dataset", path, "--epochs", 1, "--quiet", "--out", tmp_path / "r")
    assert needle.lower() in err.lower(), err
    assert "Traceback" not in err


def test_unknown_dataset_and_missing_files(tmp_path, capsys):
    err = error_of(capsys, "train", "--dataset", "cifar-11", "--epochs", 1, "--out", tmp_path / "r")
    assert "cifar-11" in err and "digits" in err
    err = error_of(capsys, "train", "--dataset", tmp_path / "nope.npy", "--epochs", 1, "--out", tmp_path / "r")
    assert "nope.npy" in err
    corrupt = tmp_path / "bad.npz"
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip archive")
    err = error_of(capsys, "train", "--dataset", corrupt, "--epochs", 1, "--out", tmp_path / "r")
    assert "bad.npz" in err
    # MNIST: only the test files are on these machines; training needs the train split
    err = error_of(capsys, "train", "--dataset", "mnist", "--binarize", "--epochs", 1, "--out", tmp_path / "r")
    assert "train-images-idx3-ubyte.gz" in err


def test_grey_levels_need_binarization(tmp_path, capsys):
    path = tmp_path / "grey.npy"
    np.save(path, np.random.default_rng(0).random((50, 16)))
    err = error_of(capsys, "train", "--dataset", path, "--epochs", 1, "--quiet", "--out", tmp_path / "r")
    assert "binar" in err.lower()


def test_bad_settings(tmp_path, capsys):
    err = error_of(capsys, "train", "--dataset", "digits", "--method", "magic", "--out", tmp_path / "r")
    assert "magic" in err and "vae" in err
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text("latnt_dim = 3\n")
    err = error_of(capsys, "train", "--config", cfg_file, "--out", tmp_path / "r")
    assert "latnt_dim" in err
    err = error_of(capsys, "train", "--dataset", "digits", "--samples", "0", "--out", tmp_path / "r")
    assert "samples" in err


def test_checkpoints_are_protected(tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli("train", *FAST, "--epochs", 2, "--out", run) == 0
    before = digest(run)
    # training again into the same directory without --resume refuses and overwrites nothing
    err = error_of(capsys, "train", *FAST, "--epochs", 2, "--out", run)
    assert "--resume" in err
    # resuming with another architecture refuses
    err = error_of(capsys, "train", *FAST, "--latent-dim", 3, "--epochs", 4, "--resume", "--out", run)
    assert "other settings" in err and "latent_dim" in err
    assert digest(run) == before
    # a corrupt weights file is detected, by eval and by resume
    weights = run / "checkpoints" / json.loads((run / "checkpoints" / "best.json").read_text())["weights_file"]
    weights.write_bytes(weights.read_bytes()[:-7])
    err = error_of(capsys, "eval", run, "--nll-samples", 5)
    assert "corrupt" in err and weights.name in err
    (run / "checkpoints" / "last.json").write_text("{ not json")
    err = error_of(capsys, "train", *FAST, "--epochs", 4, "--resume", "--out", run)
    assert "last.json" in err and "corrupt" in err
    err = error_of(capsys, "eval", tmp_path / "no-such-run")
    assert "no-such-run" in err


def test_checkpoint_of_another_model_is_refused(tmp_path):
    from varinf.checkpoint import read_checkpoint, restore
    from varinf.models import VAE, VAEConfig
    run = tmp_path / "run"
    assert run_cli("train", *FAST, "--epochs", 1, "--out", run) == 0
    tensors, meta = read_checkpoint(run / "checkpoints", "last")
    with pytest.raises(CheckpointError, match="another configuration"):
        restore(tensors, meta, model=VAE(VAEConfig(data_dim=64, latent_dim=5, hidden=(64,))))


def test_python_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "varinf", "--help"], capture_output=True, text=True,
                         env={**os.environ})
    assert out.returncode == 0 and "train" in out.stdout


def test_dynamic_binarization_of_grey_levels(tmp_path):
    """Grey-level data train with --binarize: a fresh Bernoulli draw per batch, and eval binarizes once."""
    rng = np.random.default_rng(0)
    grey = np.clip(rng.random((200, 16)) * np.linspace(0, 1, 16), 0, 1)
    path = tmp_path / "grey.npy"
    np.save(path, grey)
    run = tmp_path / "run"
    assert run_cli("train", "--dataset", path, "--binarize", "--hidden", "16", "--latent-dim", 2,
                   "--epochs", 3, "--quiet", "--out", run) == 0
    assert run_cli("eval", run, "--nll-samples", 20, "--quiet") == 0
    assert json.loads((run / "eval.json").read_text())["test_nll"] > 0


def test_plot_works_for_binary_latents(tmp_path):
    run = tmp_path / "sbn"
    assert run_cli("train", "--model", "sbn", "--method", "nvil", "--dataset", "digits", "--hidden", "16",
                   "--latent-dim", 4, "--epochs", 1, "--quiet", "--out", run) == 0
    assert run_cli("plot", run) == 0
    assert {"samples.png", "reconstructions.png", "latent.png"} <= {p.name for p in (run / "figures").iterdir()}


def test_resume_uses_the_saved_settings_and_refuses_unsafe_changes(tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli("train", *FAST, "--epochs", 1, "--seed", 4, "--lr", 3e-3, "--out", run) == 0
    # no other flag: the run's own settings (digits, hidden 64, seed 4, lr 3e-3), two more epochs
    assert run_cli("train", "--out", run, "--resume", "--epochs", 3, "--quiet") == 0
    saved = json.loads((run / "checkpoints" / "last.json").read_text())
    assert saved["epoch"] == 2 and saved["config"]["seed"] == 4 and saved["config"]["lr"] == 3e-3
    err = error_of(capsys, "train", "--out", run, "--resume", "--epochs", 4, "--lr", 1e-3, "--hidden", 8)
    assert "lr: saved 0.003, given 0.001" in err and "hidden" in err and err.count("\n") == 1
    with pytest.warns(UserWarning, match="not be bit-identical"):
        assert run_cli("train", "--out", run, "--resume", "--epochs", 4, "--threads", 2, "--quiet") == 0


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_it(tmp_path):
    run = tmp_path / "run"
    cfg = make_config(dataset="digits", hidden=(16,), latent_dim=2, epochs=1)
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"train": cfg.to_dict()}))      # what a start writes first
    assert run_cli("train", "--out", run, "--resume", "--quiet") == 0
    assert json.loads((run / "checkpoints" / "last.json").read_text())["epoch"] == 0


def test_interrupt_hint_is_a_command_that_works(tmp_path, capsys, monkeypatch):
    import varinf.training as training

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(training, "train", interrupted)
    assert run_cli("train", *FAST, "--epochs", 1, "--out", tmp_path / "run") == 130
    hint = capsys.readouterr().err.split("continue with: ")[1].strip()
    assert hint == f"varinf train --out {tmp_path / 'run'} --resume"


def test_output_is_lines_not_bars_when_redirected_and_quiet_is_silent(tmp_path, capsys):
    args = ["train", "--dataset", "digits", "--hidden", "16", "--latent-dim", "2", "--epochs", "2"]
    assert run_cli(*args, "--out", tmp_path / "a") == 0
    err = capsys.readouterr().err
    assert err.count("epoch ") == 2 and "it/s" not in err and "\r" not in err      # no tqdm bar off a terminal
    assert run_cli(*args, "--out", tmp_path / "b", "--quiet") == 0
    assert capsys.readouterr().err == ""
    with pytest.raises(varinf.ConfigError, match="progress=False"):
        make_config(quiet=True)


def test_version():
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
