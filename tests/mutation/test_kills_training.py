"""Tests that kill the surviving mutants of the loop control of ``varinf.training`` (issue #20; RESULTS §17)."""

import json

import pytest

from varinf import make_config, train
from varinf.training import still_rising
from varinf.errors import CheckpointError

TINY = dict(dataset="digits", hidden=(8,), latent_dim=2, batch_size=300, threads=1, seed=11)


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
