"""Stop an evaluation between two of its batches: the kill of the resume tests (varinf.evaluate).

Imported by tests/test_eval_resume.py, tests/test_distributed.py and tests/test_configs.py.
"""

from __future__ import annotations

import pytest

import varinf.evaluate as evaluate
import varinf.objectives as objectives


class Killed(Exception):
    """Stands for a kill between two batches."""


def count_batches(monkeypatch: pytest.MonkeyPatch, kill_after: int | None = None) -> list[int]:
    """Count the batches evaluate_model evaluates (every pass); raise Killed before batch ``kill_after`` + 1.

    Finished batches are saved after every batch (FLUSH_SECONDS = 0). Returns the list that grows
    by one per batch evaluated.
    """
    calls, real = [], objectives.chunk_summaries       # the unpatched function, however often this is called

    def counted(*args, **kwargs):
        if kill_after is not None and len(calls) == kill_after:
            raise Killed
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate, "chunk_summaries", counted)
    monkeypatch.setattr(evaluate, "FLUSH_SECONDS", 0.0)
    return calls
