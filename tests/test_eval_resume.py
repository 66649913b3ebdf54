"""A long `varinf eval` killed at any instant resumes with the numbers of an unbroken one (varinf.evaluate).

Truth is the unbroken evaluation of the same run: batch b's draws depend on (seed, stream, b) only,
so the batches saved before a kill plus those evaluated after it must give the same per-datapoint
numbers bit for bit; a resume must not evaluate a saved batch again, must ignore the files of
another evaluation, and a second evaluator of the same output is refused.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import varinf.evaluate as evaluate
from killed_eval import Killed, count_batches
from varinf.cli import main
from varinf.config import make_config
from varinf.evaluate import evaluate_run
from varinf.runlock import RunLockedError, run_lock
from varinf.training import train

SETTINGS = dict(dataset="digits", hidden=(32,), latent_dim=8, epochs=1, threads=1, patience=0, seed=5)
EVAL = dict(nll_samples=40, batch_size=32, refine_steps=2, refine_sweep=(0, 2))   # 300 test points: 10 batches
KEYS = ("test_elbo", "test_nll", "test_elbo_refined", "test_nll_refined", "amortization_gap")


@pytest.fixture(scope="module")
def run(tmp_path_factory, shared_data_dir):
    path = tmp_path_factory.mktemp("eval-resume") / "vae"
    train(make_config(**SETTINGS), path, progress=False)
    return path


@pytest.fixture(scope="module")
def unbroken(run):
    return evaluate_run(run, **EVAL, write=False)


@pytest.mark.parametrize("kill_after", [0, 3, 10, 14])   # before any batch, mid plain pass, after it, mid refined pass
def test_a_killed_evaluation_resumes_bit_identical_and_skips_saved_batches(run, unbroken, monkeypatch, kill_after):
    out = run / f"eval-{kill_after}.json"
    with monkeypatch.context() as m:
        count_batches(m, kill_after)
        with pytest.raises(Killed):
            evaluate_run(run, **EVAL, output=out)
    assert not out.exists()
    saved = list(out.with_suffix(".partial").glob("*.safetensors"))
    assert len(saved) == (0 if kill_after == 0 else 1 if kill_after <= 10 else 2)    # one file per pass
    calls = count_batches(monkeypatch)
    resumed = evaluate_run(run, **EVAL, output=out)
    assert len(calls) == 20 - kill_after                        # 10 batches per pass, the saved ones not again
    for key in KEYS:
        assert resumed[key] == unbroken[key], key
    assert [r["test_elbo"] for r in resumed["refine_sweep"]] == [r["test_elbo"] for r in unbroken["refine_sweep"]]
    assert json.loads(out.read_text())["test_nll"] == unbroken["test_nll"]
    assert not out.with_suffix(".partial").exists()             # removed once the result is written


def test_partial_results_of_another_evaluation_are_ignored(run, unbroken, monkeypatch):
    out = run / "eval-other.json"
    with monkeypatch.context() as m:
        count_batches(m, kill_after=5)
        with pytest.raises(Killed):
            evaluate_run(run, **{**EVAL, "seed": 1}, output=out)       # another seed: other numbers
    calls = count_batches(monkeypatch)
    again = evaluate_run(run, **EVAL, output=out)
    assert len(calls) == 20                                        # nothing reused
    assert again["test_nll"] == unbroken["test_nll"]


def test_an_unreadable_partial_file_is_ignored_with_a_warning(run, unbroken, caplog):
    out = run / "eval-garbage.json"
    out.with_suffix(".partial").mkdir()
    (out.with_suffix(".partial") / "0-0-deadbeef.safetensors").write_bytes(b"not a safetensors file")
    again = evaluate_run(run, **EVAL, output=out)
    assert again["test_nll"] == unbroken["test_nll"]
    assert "ignoring unreadable partial evaluation file" in caplog.text


def test_a_second_evaluator_of_the_same_output_is_refused(run, capsys):
    out = run / "eval-locked.json"
    with run_lock(out.with_suffix(".partial")):
        with pytest.raises(RunLockedError, match="another varinf process .*choose another --output"):
            evaluate_run(run, **EVAL, output=out)
        assert main(["eval", str(run), "--output", str(out), "--nll-samples", "10"]) == 2
    err = capsys.readouterr().err
    assert "choose another --output" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_real_sigkill_then_the_same_command_gives_the_unbroken_numbers(run, tmp_path):
    """SIGKILL `varinf eval` after its first save, run the same command again, compare with an unbroken run."""
    args = ["eval", str(run), "--nll-samples", "3000", "--batch-size", "10", "--quiet", "--output"]
    whole = evaluate_run(run, nll_samples=3000, batch_size=10, write=False)
    out = tmp_path / "eval.json"
    code = ("import sys, varinf.evaluate as e; e.FLUSH_SECONDS = 0.0; from varinf.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    proc = subprocess.Popen([sys.executable, "-c", code, *args, str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while not list(out.with_suffix(".partial").glob("*.safetensors")) and time.time() < deadline:
        assert proc.poll() is None, "the evaluation finished before it could be killed"
        time.sleep(0.002)
    time.sleep(0.05)
    assert proc.poll() is None, "the evaluation finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    assert main([*args, str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["test_elbo"], result["test_nll"]) == (whole["test_elbo"], whole["test_nll"])


def test_fingerprint_changes_with_weights_points_and_settings(run):
    from varinf.training import load_model

    model, _, _ = load_model(run, "best", "cpu")
    x = torch.zeros(3, 64)
    base = evaluate.fingerprint(model, x, nll_samples=10)
    assert evaluate.fingerprint(model, x, nll_samples=10) == base
    assert evaluate.fingerprint(model, x, nll_samples=11) != base
    assert evaluate.fingerprint(model, x + 1, nll_samples=10) != base
    with torch.no_grad():
        next(model.parameters())[0].view(-1)[0] += 1e-6
    assert evaluate.fingerprint(model, x, nll_samples=10) != base


def test_an_interrupted_evaluations_progress_survives_another_evaluation(run, unbroken, monkeypatch):
    """Issue #23: a later eval with other settings into the same output must not delete the saved batches of
    the interrupted one (nor a user's file in eval.partial/); the interrupted one then resumes from them."""
    out = run / "eval-two.json"
    partial = out.with_suffix(".partial")
    with monkeypatch.context() as m:
        count_batches(m, kill_after=3)
        with pytest.raises(Killed):
            evaluate_run(run, **EVAL, output=out)
    interrupted = sorted(partial.glob("*.safetensors"))
    assert len(interrupted) == 1
    saved = interrupted[0].read_bytes()
    (partial / "notes.txt").write_text("mine")
    other = evaluate_run(run, **{**EVAL, "nll_samples": 20}, output=out)       # other settings, to the end
    assert other["nll_samples"] == 20
    assert sorted(partial.glob("*.safetensors")) == interrupted and interrupted[0].read_bytes() == saved
    assert (partial / "notes.txt").read_text() == "mine"
    calls = count_batches(monkeypatch)
    resumed = evaluate_run(run, **EVAL, output=out)
    assert len(calls) == 20 - 3                                    # the 3 saved batches were not evaluated again
    assert all(resumed[key] == unbroken[key] for key in KEYS)
    assert sorted(p.name for p in partial.iterdir()) == [".lock", "notes.txt"]   # its own files gone, not the user's


def test_a_partial_file_with_fewer_rows_than_its_batch_is_ignored(run, tmp_path, caplog):
    """A partial file whose fingerprint matches but whose batch 0 holds fewer rows than a batch must not be used
    (it would leave rows of zeros in the result)."""
    from safetensors import safe_open
    from safetensors.torch import save
    from varinf.training import load_model

    model, _, _ = load_model(run, "best", "cpu")
    x = torch.bernoulli(torch.full((25, 64), 0.3), generator=torch.Generator().manual_seed(0))
    fresh = evaluate.evaluate_model(model, x, nll_samples=7, batch_size=10, resume_dir=tmp_path / "p")
    (path,) = (tmp_path / "p").glob("*.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta, t = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    assert t["batches"].tolist() == [0, 1, 2] and t["bounds"].tolist() == [0, 10, 20, 25]
    t = {k: v[..., 5:] for k, v in t.items() if k in ("elbo", "log_px")} | {      # batch 0 loses 5 rows
        "batches": t["batches"], "bounds": torch.tensor([0, 5, 15, 20])}
    path.write_bytes(save(t, metadata=meta))
    again = evaluate.evaluate_model(model, x, nll_samples=7, batch_size=10, resume_dir=tmp_path / "p")
    assert torch.equal(again["elbo"], fresh["elbo"]) and torch.equal(again["log_px"], fresh["log_px"])
    assert "batch 0 holds 5 rows, not the 10 of its batch" in caplog.text


def test_non_finite_numbers_are_an_error_and_no_eval_json_is_written(run, monkeypatch):
    """eval.json is JSON: a bound of -inf (a test point of probability 0 under the model) or NaN is an error
    naming the numbers, never written as NaN/Infinity."""
    real = evaluate.evaluate_model

    def some_infinite(*args, **kwargs):
        out = real(*args, **kwargs)
        out["log_px"][0] = -float("inf")
        return out

    monkeypatch.setattr(evaluate, "evaluate_model", some_infinite)
    out = run / "eval-inf.json"
    with pytest.raises(evaluate.VarinfError, match="non-finite test_nll.*nothing was written"):
        evaluate_run(run, **{**EVAL, "refine_steps": 0, "refine_sweep": None}, output=out)
    assert not out.exists()
