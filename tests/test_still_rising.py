"""The end-of-training warning: ``still_rising`` on scripted validation histories, and the loop that calls it."""

import logging
import math

import pytest

from varinf.config import TrainConfig
from varinf.training import STILL_RISING_FRACTION, still_rising, train


def test_a_straight_line_warns_with_the_numbers():
    bounds = [-1000.0 + 10 * e for e in range(40)]             # +10 nats per epoch, 40 epochs
    note = still_rising(bounds)
    # w = 4: mean of epochs 37-40 minus mean of epochs 33-36 = 40 nats; whole rise 390 nats: 10 %
    assert note.startswith("training ended while the validation bound was still rising steeply: +40 nats from "
                           "the mean of epochs 33-36 to that of epochs 37-40 (10 % of its whole rise, 390 nats)")


def test_a_levelled_off_curve_and_noise_do_not_warn():
    converged = [-100 - 80 * math.exp(-e / 5) for e in range(100)]
    assert still_rising(converged) is None
    noisy = [-100 + (0.3 if e % 2 else -0.3) for e in range(50)]
    noisy[0] = -150
    assert still_rising(noisy) is None


def test_short_falling_and_non_finite_histories_are_not_judged():
    assert still_rising([-100, -90, -80, -70]) is None          # fewer than 5 epochs
    assert still_rising([-100 - e for e in range(20)]) is None    # never rose
    assert still_rising([-math.inf] + [-100 + e for e in range(19)]) is None


def test_the_threshold_is_two_percent_of_the_whole_rise():
    """Window w = 2 of 20 epochs: the last two epochs at +r over the two before; the whole rise 100 nats."""
    def history(r):
        flat = [0.0] + [100.0 - r] * 17                         # epoch 1 at 0, then flat
        return flat + [100.0, 100.0]                            # last window: +r over the window before
    assert STILL_RISING_FRACTION == 0.02
    assert still_rising(history(2.1)) is not None
    assert still_rising(history(1.9)) is None


def test_training_that_ends_on_a_rising_bound_says_so(tmp_path, caplog):
    cfg = TrainConfig(latent_dim=2, hidden=(16,), epochs=6, patience=None, lr=3e-4, batch_size=200, threads=1)
    with caplog.at_level(logging.WARNING, logger="varinf"):
        result = train(cfg, tmp_path / "short", progress=False)
    assert still_rising([r["valid_elbo"] for r in result.history]) is not None     # 6 epochs of a slow start
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        still_rising([r["valid_elbo"] for r in result.history])]


def test_an_early_stopped_run_does_not_warn(tmp_path, caplog):
    cfg = TrainConfig(latent_dim=2, hidden=(16,), epochs=200, patience=1, lr=3e-2, batch_size=200, threads=1)
    with caplog.at_level(logging.WARNING, logger="varinf"):
        result = train(cfg, tmp_path / "stopped", progress=False)
    assert result.stopped_early
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
