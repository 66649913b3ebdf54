"""Tests that kill the surviving mutants of the statistics of ``varinf.evaluate`` (issue #20; RESULTS §17)."""

import json

import pytest
import torch

import varinf.evaluate
from test_algorithm_pins import TINY
from varinf import make_config, train
from varinf.evaluate import evaluate_run


def test_one_test_point_has_no_standard_error_and_eval_json_says_null(tmp_path, monkeypatch):
    """A mean over n = 1 point has no standard error (the n − 1 sd is undefined): eval.json holds null, not
    NaN (which JSON cannot hold) or a number (kills ``n > 1`` → ``n >= 1`` and the condition dropped)."""
    run = tmp_path / "run"
    train(make_config(**TINY, epochs=1), run, progress=False)
    one = torch.tensor([-3.25], dtype=torch.float64)
    monkeypatch.setattr(varinf.evaluate, "evaluate_model", lambda model, x, **kw: {"elbo": one, "log_px": one + 1})
    r = evaluate_run(run, nll_samples=2, subset=1)
    assert (r["test_points"], r["test_elbo"], r["test_nll"]) == (1, -3.25, 2.25)
    assert r["test_elbo_stderr"] is None and r["test_nll_stderr"] is None
    saved = json.loads((run / "eval.json").read_text())
    assert saved["test_elbo_stderr"] is None and saved["test_nll_stderr"] is None
    # two points: sd with n − 1 = |a − b| / √2, over √2
    two = torch.tensor([-1.0, -4.0], dtype=torch.float64)
    monkeypatch.setattr(varinf.evaluate, "evaluate_model", lambda model, x, **kw: {"elbo": two, "log_px": two})
    r = evaluate_run(run, nll_samples=2, subset=2, write=False)
    assert r["test_elbo_stderr"] == pytest.approx(1.5, rel=1e-15)


def test_each_test_batch_draws_from_its_own_fixed_stream():
    """The generator of test batch b is seeded by the first 64-bit word of numpy's SeedSequence([seed, stream, b]),
    halved (>> 1) into torch's seed range: a recorded golden key, so that a change of the streams (and of
    every evaluation number in RESULTS) cannot pass unnoticed (kills >> 2 and the 32-bit word)."""
    cpu = torch.device("cpu")
    assert varinf.evaluate.batch_generator(5, 1, 2, cpu).initial_seed() == 2485442970020027996
    assert varinf.evaluate.batch_generator(0, 0, 0, cpu).initial_seed() == 7896617691693857887
    keys = {varinf.evaluate.batch_generator(5, s, b, cpu).initial_seed() for s in range(3) for b in range(3)}
    assert len(keys) == 9


def test_a_device_other_than_cpu_and_cuda_gets_the_gpu_chunk_budget():
    """CHUNK_FLOATS has a CPU and a CUDA budget; any other accelerator (mps, xpu; here the meta device) gets
    the GPU's: 40M floats / (100 × 784) = 510 samples a chunk (kills the fallback dropped)."""
    assert varinf.evaluate._chunk(5000, 100, 784, "meta") == 510
    assert varinf.evaluate._chunk(5000, 100, 784, torch.device("meta")) == 510


def test_a_chunk_holds_at_least_one_sample_and_at_most_k():
    """Samples per chunk = budget // (B·D), at least 1 (a batch larger than the budget: one sample a chunk)
    and at most k (kills the floor 1 → 2 of either max)."""
    assert varinf.evaluate._chunk(5000, 2000, 784, "cpu") == 1          # 1M // 1.568M = 0 → 1
    assert varinf.evaluate._chunk(1, 10, 10, "cpu") == 1                # k = 1
    assert varinf.evaluate._chunk(5000, 10, 10, "cpu") == 5000          # budget 10⁴ samples, k = 5000
    assert varinf.evaluate._chunk(10**6, 1, 1, "cpu") == 10**6          # B·D = 1: the whole budget
