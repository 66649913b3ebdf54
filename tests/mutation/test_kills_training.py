"""Tests that kill the surviving mutants of the loop control of ``varinf.training`` (issue #20; RESULTS §17)."""

import json

import pytest

from varinf import make_config, train
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
