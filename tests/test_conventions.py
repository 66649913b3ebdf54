"""The conventions PyTorch users bring: logging from Python, TensorBoard events, a thread default.

* ``varinf.enable_logging()`` prints the per-epoch lines of ``varinf.train`` as the CLI does;
* ``tensorboard=True`` / ``--tensorboard`` writes the rows of ``metrics.jsonl`` and the learning
  rates as TensorBoard events, read back here with TensorBoard's own ``EventAccumulator``;
* the default thread count is 1 (docs/RESULTS.md §3): ``varinf.train`` sets it, ``threads=None``
  leaves torch's own.
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

TINY = dict(dataset="digits", hidden=(8,), latent_dim=2, batch_size=200, patience=None, seed=1)


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


def test_default_thread_count_is_one_and_none_keeps_torchs(tmp_path):
    assert varinf.make_config().threads == 1
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        varinf.train(varinf.make_config(**TINY, epochs=1), tmp_path / "default", progress=False)
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        torchs = dataclasses.replace(varinf.make_config(**TINY, epochs=1), threads=None)   # None: torch's own
        varinf.train(torchs, tmp_path / "torch", progress=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert json.loads((tmp_path / "default" / "config.json").read_text())["train"]["threads"] == 1
