"""Shared runner for one row of a seed-003 table: train from the row's config, then evaluate.

Used by ``benchmarks/table1.py`` (continuous latents) and ``benchmarks/table2.py`` (binary
latents); each of those only names its rows. The evaluation is ``varinf eval`` (k =
``--nll-samples`` importance samples per test point, 5000 by default, Burda et al. 2016):
``test_elbo``/``test_nll`` use the encoder's q; ``test_elbo_refined``/``test_nll_refined`` use q
refined with ``--refine-steps`` steps (default: the run's own T; 0 for a method without
refinement). The row's summary (bounds, NLL, epochs, wall time, hardware) is printed and written
to RUN_DIR/<table>_row.json. ``--resume`` continues an interrupted training run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from varinf.checkpoint import atomic_write_json
from varinf.config import make_config
from varinf.evaluate import evaluate_run
from varinf.training import train

REPO = Path(__file__).resolve().parents[1]


def run_row(table: str, rows: dict[str, str], argv=None, description: str | None = None) -> dict:
    """Parse ``argv``, train the chosen row of ``rows`` (name -> config file) and evaluate it."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--row", choices=sorted(rows), required=True)
    ap.add_argument("--out", help=f"run directory (default runs/{table}-ROW)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--nll-samples", type=int, default=5000)
    ap.add_argument("--subset", type=int, help="evaluate on a random subset of the test set")
    ap.add_argument("--refine-steps", type=int, help="test-time refinement steps (default: the run's T)")
    ap.add_argument("--refine-samples", type=int, help="samples per test-time refinement step")
    ap.add_argument("--epochs", type=int, help="override the config's maximum epochs")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--data-dir")
    args = ap.parse_args(argv)

    config = REPO / "configs" / rows[args.row]
    out = Path(args.out or REPO / "runs" / f"{table}-{args.row}")
    cfg = make_config(config, epochs=args.epochs, threads=args.threads, data_dir=args.data_dir)
    t0 = time.perf_counter()
    result = train(cfg, out, resume=args.resume, progress=True)
    train_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    ev = evaluate_run(out, nll_samples=args.nll_samples, subset=args.subset, data_dir=args.data_dir,
                      refine_steps=args.refine_steps, refine_samples=args.refine_samples, progress=True)
    eval_seconds = time.perf_counter() - t0
    row = {
        "row": args.row,
        "config": str(config.relative_to(REPO)),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "train_seconds_this_invocation": train_seconds,
        "train_seconds_total": sum(h["seconds"] for h in result.history),
        "eval_seconds": eval_seconds,
        "hardware": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
                    f"torch {torch.__version__} threads={torch.get_num_threads()}",
        "test_bound_encoder": ev["test_elbo"],
        "test_nll_encoder": ev["test_nll"],
        "refine_steps": ev["refine_steps"],
        "test_bound_refined": ev["test_elbo_refined"],
        "test_nll_refined": ev["test_nll_refined"],
        "test_points": ev["test_points"],
        "nll_samples": ev["nll_samples"],
    }
    atomic_write_json(out / f"{table}_row.json", row)
    print(json.dumps(row, indent=2))
    return row
