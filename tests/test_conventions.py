"""The conventions PyTorch users bring: logging from Python, TensorBoard events, a thread default.

* ``varinf.enable_logging()`` prints the per-epoch lines of ``varinf.train`` as the CLI does;
* ``tensorboard=True`` / ``--tensorboard`` writes the rows of ``metrics.jsonl`` and the learning
  rates as TensorBoard events, read back here with TensorBoard's own ``EventAccumulator``;
* the default thread count is 1 (docs/RESULTS.md §3): ``varinf.train`` sets it, ``threads=0``
  leaves torch's own (and a run saved with ``"threads": null`` reads as 0).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys

import numpy as np
import pytest
import torch

import varinf
from varinf.cli import main as cli
from varinf.errors import ConfigError

TINY = dict(dataset="digits", hidden=(8,), latent_dim=2, batch_size=200, patience=0, seed=1)


@pytest.fixture
def clean_logger():
    """The ``varinf`` logger as a fresh interpreter has it (no handler, level unset), restored afterwards."""
    logger = logging.getLogger("varinf")
    saved = logger.handlers[:], logger.level, logger.propagate
    logger.handlers, logger.level, logger.propagate = [], logging.NOTSET, True
    yield logger
    logger.handlers, logger.level, logger.propagate = saved


def metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_python_training_is_silent_until_enable_logging(tmp_path, clean_logger, capfd):
    varinf.train(varinf.make_config(**TINY, epochs=1), tmp_path / "silent", progress=False)
    assert "epoch" not in capfd.readouterr().err
    assert varinf.enable_logging() is clean_logger
    varinf.enable_logging()                                           # a second call does not double the lines
    varinf.train(varinf.make_config(**TINY, epochs=2), tmp_path / "loud", progress=False)
    err = capfd.readouterr().err
    rows = metrics(tmp_path / "loud")
    for row in rows:                                                  # the CLI's line, once per epoch
        line = f"epoch {row['epoch']:4d}  train ELBO {row['train_elbo']:9.3f}  valid ELBO {row['valid_elbo']:9.3f}"
        assert err.count(line) == 1, err
    varinf.enable_logging("WARNING")
    varinf.train(varinf.make_config(**TINY, epochs=1), tmp_path / "quiet", progress=False)
    assert "epoch" not in capfd.readouterr().err
    with pytest.raises(ConfigError, match="level must be one of"):
        varinf.enable_logging("LOUD")


def read_scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_events_hold_the_metrics_rows_and_learning_rates(tmp_path):
    run = tmp_path / "run"
    cfg = varinf.make_config(**TINY, epochs=3, warmup_steps=10, lr=2e-3)      # 6 updates per epoch
    varinf.train(cfg, run, progress=False, tensorboard=True)
    files = sorted((run / "tensorboard").glob("events.out.tfevents.*"))
    assert len(files) == 1
    first = files[0].read_bytes()
    scalars = read_scalars(run / "tensorboard")
    rows = metrics(run)
    f32 = lambda v: float(np.float32(v))                              # noqa: E731 - events store float32
    assert scalars["bound/train"] == [(r["epoch"], f32(r["train_elbo"])) for r in rows]
    assert scalars["bound/valid"] == [(r["epoch"], f32(r["valid_elbo"])) for r in rows]
    assert scalars["time/epoch_seconds"] == [(r["epoch"], f32(r["seconds"])) for r in rows]
    # linear warm-up over 10 updates: lr * min(1, n / 10) at update n = 6, 12, 18
    for group in ("generative", "inference"):                         # the VAE's two optimizers
        assert scalars[f"lr/{group}"] == [(1, f32(2e-3 * 0.6)), (2, f32(2e-3)), (3, f32(2e-3))]

    assert cli(["train", "--out", str(run), "--resume", "--epochs", "5", "--quiet", "--tensorboard"]) == 0
    files = sorted((run / "tensorboard").glob("events.out.tfevents.*"))
    assert len(files) == 2 and files[0].read_bytes() == first                # a new file; the old one untouched
    scalars = read_scalars(run / "tensorboard")
    assert [step for step, _ in scalars["bound/valid"]] == [1, 2, 3, 4, 5]
    assert scalars["bound/valid"][3:] == [(r["epoch"], f32(r["valid_elbo"])) for r in metrics(run)[3:]]


def test_no_tensorboard_folder_without_the_switch_and_none_through_a_symlink(tmp_path):
    varinf.train(varinf.make_config(**TINY, epochs=1), tmp_path / "plain", progress=False)
    assert not (tmp_path / "plain" / "tensorboard").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "tensorboard").symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="symlink"):
        varinf.train(varinf.make_config(**TINY, epochs=1), tmp_path / "linked", progress=False, tensorboard=True)
    assert list(elsewhere.iterdir()) == []


def test_missing_tensorboard_package_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)        # import fails as if not installed
    assert cli(["train", "--out", str(tmp_path / "run"), "--epochs", "1", "--tensorboard", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("varinf train: error: --tensorboard needs the tensorboard package") and "\n" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_default_thread_count_is_one_and_zero_keeps_torchs(tmp_path, monkeypatch):
    """A run uses its thread count (1 by default, None: torch's own) and gives the caller's back when it ends."""
    import varinf.training as training

    assert varinf.make_config().threads == 1
    seen, loop = [], training._train_loop
    monkeypatch.setattr(training, "_train_loop", lambda *a, **k: seen.append(torch.get_num_threads()) or loop(*a, **k))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        varinf.train(varinf.make_config(**TINY, epochs=1), tmp_path / "default", progress=False)
        assert seen == [1] and torch.get_num_threads() == 2              # restored after the run
        torchs = varinf.make_config(**TINY, epochs=1, threads=0)                        # 0: torch's own
        varinf.train(torchs, tmp_path / "torch", progress=False)
        assert seen == [1, 2] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert json.loads((tmp_path / "default" / "config.json").read_text())["train"]["threads"] == 1
    # None is "not given" to make_config (the default 1) and no thread count to TrainConfig: one meaning each
    assert varinf.make_config(threads=None).threads == 1
    with pytest.raises(ConfigError, match="threads must be an integer, got None"):
        dataclasses.replace(varinf.make_config(), threads=None)
    with pytest.raises(ConfigError, match="threads must be an integer >= 0, got -1"):
        varinf.make_config(threads=-1)
    from varinf.config import config_from_saved                    # a run saved when null meant torch's own
    assert config_from_saved({**varinf.make_config().to_dict(), "threads": None}, "config.json").threads == 0


# ---------------------------------------------------------------- evaluation: cost, refined keys, gap figure
@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("eval") / "run"
    varinf.train(varinf.make_config(**TINY, epochs=2), run, progress=False)
    return run


def test_a_long_evaluation_announces_its_cost_before_the_rest(small_run, monkeypatch, caplog):
    """The estimate (first batch's time × the remaining batches) is logged after batch 1, before batch 2 runs."""
    import varinf.evaluate as evaluate
    from killed_eval import Killed, count_batches

    count_batches(monkeypatch, kill_after=2)                          # stopped before the 3rd of 6 batches
    monkeypatch.setattr(evaluate, "LONG_EVAL_SECONDS", 0.0)           # everything counts as long: a warning
    with caplog.at_level(logging.INFO, logger="varinf"), pytest.raises(Killed):
        evaluate.evaluate_run(small_run, nll_samples=20, batch_size=50, write=False)
    [record] = [r for r in caplog.records if "the first of" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith("eval: the first of 6 batches took ")
    assert "the rest of this pass will take about" in record.getMessage() and "resumes" in record.getMessage()


def test_announce_cost_golden(caplog):
    from varinf.evaluate import LONG_EVAL_SECONDS, announce_cost

    with caplog.at_level(logging.INFO, logger="varinf"):
        assert announce_cost("eval", 2.0, 11, 5000) == 20.0
        assert announce_cost("eval (refined, T=20)", 78.0, 100, 5000) == 78.0 * 99 > LONG_EVAL_SECONDS
    short, long = caplog.records
    assert short.levelno == logging.INFO and short.getMessage() == (
        "eval: the first of 11 batches took 2.0 s (k = 5000 importance samples per test point); the rest of this "
        "pass will take about 20 s.")
    assert long.levelno == logging.WARNING and "took 78 s" in long.getMessage() and "about 2.1 h" in long.getMessage()


def test_plain_evaluation_reports_no_refined_numbers(small_run):
    result = varinf.evaluate_run(small_run, nll_samples=20, write=False)
    for key in ("test_elbo_refined", "test_elbo_refined_stderr", "test_nll_refined", "test_nll_refined_stderr",
                "amortization_gap", "amortization_gap_stderr"):
        assert result[key] is None, key
    assert result["refiner"]["steps"] == 0


def test_sweep_gap_stderr_is_paired(small_run):
    """gap_stderr is the standard error of the per-datapoint difference bound_T(x) - bound_0(x)."""
    from varinf.evaluate import evaluate_model, run_refiner
    from varinf.training import load_model

    result = varinf.evaluate_run(small_run, nll_samples=20, refine_steps=3, refine_sweep=(0, 3), write=False)
    model, cfg, _ = load_model(small_run)
    x = varinf.load_dataset("digits").split("test")
    ref = evaluate_model(model, x, nll_samples=20, refiner=run_refiner(cfg, "gaussian", refine_steps=3), sweep=(0, 3))
    diff = ref["sweep"][1] - ref["sweep"][0]
    row = result["refine_sweep"][1]
    assert row["gap_stderr"] == diff.std(unbiased=True).item() / diff.numel() ** 0.5
    assert result["refine_sweep"][0]["gap_stderr"] == 0.0


def test_gap_figure_error_bars_are_paired_and_labelled(tmp_path, monkeypatch):
    """Three test points with a 100-nat spread between them; the gains 1, 2, 3 at T = 1: s.e. 1/sqrt(3)."""
    import matplotlib.axes

    from varinf.evaluate import plot_amortization_gap

    calls = []
    real = matplotlib.axes.Axes.errorbar
    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar",
                        lambda self, *a, **kw: calls.append((a, kw)) or real(self, *a, **kw))
    base = torch.tensor([-200.0, -100.0, -300.0], dtype=torch.float64)
    bounds = torch.stack([base, base + torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)])      # (T', N)
    path = plot_amortization_gap([0, 1], bounds, tmp_path / "gap.png", "amortisation gap: test", "refiner: R")
    assert path.stat().st_size > 5000
    [(args, kw)] = calls
    assert list(args[1]) == [0.0, 2.0]                                # mean gain over T = 0
    assert kw["yerr"] == [0.0, pytest.approx(2 / 3 ** 0.5, rel=1e-12)]  # ± 2 paired s.e. (not 2 x 100 / sqrt 3)
    assert "paired difference" in kw["label"] and "3 test points" in kw["label"]


def test_method_flag_lists_its_choices():
    from varinf.cli import build_parser
    from varinf.infer import METHODS

    train_parser = build_parser()._subparsers._group_actions[0].choices["train"]
    [action] = [a for a in train_parser._actions if "--method" in a.option_strings]
    assert list(action.choices) == list(METHODS)
    assert "{" + ",".join(METHODS) + "}" in train_parser.format_help().replace("\n", "").replace(" ", "")


def test_network_size_defaults_to_the_datasets():
    """digits gets a digits-sized network; other data Hjelm et al.'s 784-500-200; given values win."""
    from varinf.cli import build_parser

    import dataclasses

    digits = varinf.make_config()
    assert (digits.latent_dim, digits.hidden) == (None, None)                           # "the dataset's size"
    assert (digits.resolved().latent_dim, digits.resolved().hidden) == (8, (256,))
    mnist = varinf.make_config(dataset="binarized-mnist").resolved()
    assert (mnist.latent_dim, mnist.hidden) == (200, (500,))
    assert dataclasses.replace(digits, dataset="binarized-mnist").resolved() == mnist      # resolved where used
    assert varinf.make_config(latent_dim=2).resolved().hidden == (256,)
    assert varinf.make_config(hidden=(64,)).resolved().latent_dim == 8
    assert varinf.make_config(model="sbn", method="avi", hidden=()).resolved().hidden == ()   # () is none
    assert digits.resolved().to_dict()["hidden"] == [256]                                   # saved concrete
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["train"].format_help().split())
    assert "(default 8 for digits, else 200)" in help_text and "(default 256 for digits, else 500)" in help_text
