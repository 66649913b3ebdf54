"""Tests that kill the surviving mutants of the loop control of ``varinf.training`` (issue #20; RESULTS §17)."""

import json
import logging
import math
import re

import numpy as np
import pytest

import varinf.training

from test_algorithm_pins import SCRIPT, TINY
from varinf import make_config, train
from varinf.checkpoint import read_checkpoint
from varinf.errors import CheckpointError, ConfigError, VarinfError
from varinf.infer import AEVB
from varinf.training import still_rising


def test_a_checkpoint_without_optimizer_state_is_refused_in_one_line(tmp_path):
    """A last.json whose "optimizers" entry was lost does not fit the method's optimizers: resume says so
    (a CheckpointError naming both), not a TypeError (kills meta.get("optimizers", {}) → get(..., None))."""
    run = tmp_path / "run"
    train(make_config(**TINY, epochs=1), run, progress=False)
    last = run / "checkpoints" / "last.json"
    record = json.loads(last.read_text())
    del record["optimizers"]
    last.write_text(json.dumps(record))
    expected = r"^checkpoint optimizers \[\] do not fit method vae \(expects \['generative', 'inference'\]\)"
    with pytest.raises(CheckpointError, match=expected):
        train(make_config(**TINY, epochs=2), run, resume=True, progress=False)


def test_five_epochs_are_judged_and_a_bound_that_never_beat_epoch_1_is_not():
    """The rule's edges: 5 epochs (the fewest judged; window w = 2) rising in a straight line warn, with
    the numbers of epochs 2-3 → 4-5; a bound whose best is epoch 1 (whole rise 0) never warns, even when its
    last window rose (kills n < 5 → n <= 5 / n < 6, total <= 0 → total < 0 / total <= 1, and rise < 2 % → rise <= 2 %)."""
    note = still_rising([0.0, 1.0, 2.0, 3.0, 4.0])
    assert note is not None and note.startswith("training ended while the validation bound was still rising steeply: "
                                                "+2 nats from the mean of epochs 2-3 to that of epochs 4-5 (50 % ")
    assert still_rising([5.0, 1.0, 1.0, 2.0, 3.0]) is None
    # the message: the gain 4.5 of the last two epochs' mean is 56 % of the whole rise 8, and what to do
    assert still_rising([0.0, 1.0, 2.0, 4.0, 8.0]) == (
        "training ended while the validation bound was still rising steeply: +4.5 nats from the mean of epochs 2-3 "
        "to that of epochs 4-5 (56 % of its whole rise, 8 nats); the model has probably not converged: train longer "
        "(--resume with a larger --epochs)")
    assert still_rising([0.0, 0.1, 0.2, 0.3, 0.4]) is not None         # a whole rise below 1 nat is judged too
    # exactly 2 % of the whole rise (1 of 50 nats, exact in floats) is "at least 2 %": it warns
    assert 0.02 * 50 == 1.0 and still_rising([0.0, 49.0, 49.0, 50.0, 50.0]) is not None


class Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_the_loop_logs_each_epoch_marks_improvements_and_reports_the_early_stop(tmp_path, monkeypatch):
    """The per-epoch line (epoch, both bounds, seconds, "*" on a new best) and the early-stopping line, on
    test_algorithm_pins' scripted validation bounds SCRIPT (patience 2: stops after epoch 6, best −8 at 4)."""
    monkeypatch.setattr(varinf.training, "validation_bound", lambda method, x, cfg, epoch, *a, **k: SCRIPT[epoch])
    logger, lines = logging.getLogger("varinf"), Lines()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(lines)
    try:
        train(make_config(**TINY, epochs=8, patience=2), tmp_path / "run", progress=False)
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
    epochs = [line for line in lines.lines if line.startswith("epoch ")]
    assert len(epochs) == 6
    for i, line in enumerate(epochs):
        star = r"  \*" if i + 1 in (1, 2, 4) else ""
        assert re.fullmatch(rf"epoch {i + 1:4d}  train ELBO +-\d+\.\d{{3}}  valid ELBO {SCRIPT[i]:9.3f}  +\d+\.\ds{star}",
                            line), line
    assert lines.lines[-1] == "early stopping: no validation improvement for 2 epochs (best -8.000 at epoch 4)"


def test_a_non_finite_bound_stops_training_naming_its_epoch(tmp_path, monkeypatch):
    """A NaN training or validation bound in epoch 2 is an error that names epoch 2 (and the intact epoch 1)."""
    bounds = iter([-9.0, math.nan])
    monkeypatch.setattr(varinf.training, "validation_bound", lambda *a, **k: next(bounds))
    with pytest.raises(VarinfError, match=r"^the validation bound became nan in epoch 2; .* checkpoints of epoch 1 "):
        train(make_config(**TINY, epochs=3), tmp_path / "valid", progress=False)
    monkeypatch.setattr(varinf.training, "validation_bound", lambda *a, **k: -9.0)
    real, calls = varinf.training.train_epoch, []

    def nan_in_epoch_2(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs) if len(calls) == 1 else math.nan
    monkeypatch.setattr(varinf.training, "train_epoch", nan_in_epoch_2)
    with pytest.raises(VarinfError, match=r"^the training bound became nan in epoch 2; .* checkpoints of epoch 1 "):
        train(make_config(**TINY, epochs=3), tmp_path / "train", progress=False)


class Bar:
    """tqdm's part the loop uses, recording its settings and updates."""
    made = []

    def __init__(self, **kwargs):
        self.kwargs, self.updates, self.disable = kwargs, 0, False
        Bar.made.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def set_postfix(self, **kwargs):
        pass

    def update(self, n):
        self.updates += n


class Board:
    """EpochBoard's part the loop uses, recording each epoch's record."""
    records = []

    def __init__(self, run_dir):
        pass

    def epoch(self, record, optimizers):
        Board.records.append(dict(record))

    def close(self):
        pass


def test_the_progress_bar_counts_the_batches_and_tensorboard_gets_each_epochs_record(tmp_path, monkeypatch):
    """1197 training images in batches of 300: a bar of 4 steps an epoch, updated once a step, redrawn at most
    every 0.5 s; each epoch's metrics record goes to TensorBoard as written to metrics.jsonl."""
    monkeypatch.setattr(varinf.training, "tqdm", Bar)
    monkeypatch.setattr(varinf.training, "EpochBoard", Board)
    Bar.made, Board.records = [], []
    result = train(make_config(**TINY, epochs=2), tmp_path / "run", progress=True, tensorboard=True)
    assert [(b.kwargs["total"], b.updates, b.kwargs["desc"]) for b in Bar.made] == [(4, 4, "epoch 1/2"),
                                                                                      (4, 4, "epoch 2/2")]
    assert all(b.kwargs["mininterval"] == 0.5 and b.kwargs["leave"] is False for b in Bar.made)
    assert Board.records == result.history and len(result.history) == 2


def test_dynamic_binarization_reaches_every_training_batch(tmp_path, monkeypatch):
    """Grey-level data with binarize=True: every minibatch the method steps on is a fresh 0/1 draw."""
    grey = np.random.default_rng(0).uniform(0.2, 0.8, size=(200, 16))
    np.save(tmp_path / "grey.npy", grey)
    seen, step = [], AEVB.step

    def spy(self, x, *args, **kwargs):
        seen.append(x.clone())
        return step(self, x, *args, **kwargs)
    monkeypatch.setattr(AEVB, "step", spy)
    cfg = make_config(dataset=str(tmp_path / "grey.npy"), binarize=True, hidden=(8,), latent_dim=2, batch_size=40,
                      threads=1, seed=3, epochs=1)
    train(cfg, tmp_path / "run", progress=False)
    assert len(seen) == 4 and all(set(x.unique().tolist()) <= {0.0, 1.0} for x in seen)


def test_a_refused_resume_names_the_run_directory(tmp_path):
    """Resuming with a setting that may not change names the run, the setting and both values."""
    run = tmp_path / "run"
    train(make_config(**TINY, epochs=1), run, progress=False)
    with pytest.raises(ConfigError, match=rf"^cannot resume {re.escape(str(run))} with other settings \(lr: saved "
                                          r"0\.001, given 0\.002\)"):
        train(make_config(**TINY, epochs=2, lr=2e-3), run, resume=True, progress=False)


def test_a_checkpoint_whose_history_does_not_fit_its_epoch_is_refused(tmp_path):
    """last.json after epoch 2 with its history renumbered, a bound that is not a number, or more bad epochs
    than epochs since the best: each refused in one
    line saying what is wrong (the checkpoint's consistency checks)."""
    run = tmp_path / "run"
    train(make_config(**TINY, epochs=2), run, progress=False)
    last = run / "checkpoints" / "last.json"
    good = json.loads(last.read_text())
    for change, message in [(lambda r: r["history"][1].update(epoch=3),
                             "history holds 2 records, not the epochs 1 to 2 that epoch 1 implies"),
                            (lambda r: r["history"][0].update(train_elbo="-90"),
                             "history holds a bound that is not a finite number"),
                            (lambda r: r.update(bad_epochs=5),
                             f"bad_epochs 5 exceeds the {2 - good['best_epoch']} epochs since the best one")]:
        record = json.loads(json.dumps(good))
        change(record)
        last.write_text(json.dumps(record))
        with pytest.raises(CheckpointError, match=rf"^checkpoint metadata {re.escape(str(last))}: {message}; "):
            read_checkpoint(run / "checkpoints", "last")
