"""How fast runs reach their final validation bound, from each run's metrics.jsonl (docs/RESULTS.md §12).

    python benchmarks/epochs_to_bound.py RUN_DIR [RUN_DIR ...]

Per run: the validation bound at epochs 1, 5, 10, 20, 40, 80; the best bound and its epoch; the epochs
run; the first epoch whose bound is ≥ 0.95 × the best (for a positive best bound, as a Gaussian density's
can be) and the first that reaches 95 % of the rise from epoch 1; and the first epoch at or above the
*first* run's best bound (a common target).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from varinf.plotting import read_metrics


def first(values: list[float], target: float) -> int | None:
    """1-based epoch of the first value ≥ target, None if none."""
    return next((i + 1 for i, v in enumerate(values) if v >= target), None)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    args = ap.parse_args(argv)
    target = None
    for run in args.runs:
        v = [r["valid_elbo"] for r in read_metrics(run)]
        best = max(v)
        target = best if target is None else target
        at = {e: round(v[e - 1], 1) for e in (1, 5, 10, 20, 40, 80) if e <= len(v)}
        print(f"{run}: valid bound by epoch {at}; best {best:.1f} at epoch {v.index(best) + 1} of {len(v)}; "
              f"first epoch >= 0.95 x best: {first(v, 0.95 * best) if best > 0 else 'n/a (best <= 0)'}; "
              f"95 % of the rise from epoch 1: {first(v, v[0] + 0.95 * (best - v[0]))}; "
              f"first epoch >= {target:.1f}: {first(v, target)}")


if __name__ == "__main__":
    main()
