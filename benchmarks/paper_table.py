"""Run one row of seed 003's Table 1 (continuous latents) or Table 2 (binary latents): train, then evaluate.

    python benchmarks/paper_table.py --table 1 --row gbvi-reduced      # -> runs/table1-gbvi-reduced/
    python benchmarks/paper_table.py --table 2 --row avi20-reduced --refine-steps 20 --refine-samples 20

Table 1 rows (paper: RMSprop 3e-3, batch 100, early stopping, at most 500 epochs):
    vae, gbvi20                   configs/table1_{vae,gbvi20}.toml             paper settings
    vae-reduced, gbvi-reduced     configs/table1_{vae,gbvi}_reduced.toml       about an hour on 2 CPU cores
Table 2 rows (paper: Adam 3e-4, batch 10, early stopping, at most 500 epochs; "-reduced": about an
hour on 2 CPU cores, see each file's header):
    wake-sleep[-reduced]          configs/table2_wake_sleep[_reduced].toml     784-200 linear
    nvil[-reduced]                configs/table2_nvil[_reduced].toml           784-200 linear + baseline net
    nvil-240[-reduced]            configs/table2_nvil_240[_reduced].toml       (240) softplus (not a paper row)
    avi20[-reduced]               configs/table2_avi20[_reduced].toml          784-200 linear
    avi20-240[-reduced]           configs/table2_avi20_240[_reduced].toml      (240) softplus

The evaluation is ``varinf eval`` (k = ``--nll-samples`` importance samples per test point, 5000 by
default, Burda et al. 2016): ``test_elbo``/``test_nll`` use the encoder's q; ``test_elbo_refined``/
``test_nll_refined`` use q refined by ``--refine-steps`` steps (default: the run's own T, so for a
``gbvi`` row the numbers to set beside the paper's; 0 for a method without refinement; for an
``avi`` row, AVI steps of Eq. 9 at test time). The row's summary (bounds, NLL, epochs, wall time,
hardware) is printed and written to RUN_DIR/table<N>_row.json. ``--resume`` continues an
interrupted training run.
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


TABLES = {
    "1": {
        "vae": "table1_vae.toml",
        "gbvi20": "table1_gbvi20.toml",
        "vae-reduced": "table1_vae_reduced.toml",
        "gbvi-reduced": "table1_gbvi_reduced.toml",
        "hvi5": "table1_hvi5.toml",
        "hvi10": "table1_hvi10.toml",
        "hvi5-reduced": "table1_hvi5_reduced.toml",
        "hvi10-reduced": "table1_hvi10_reduced.toml",
    },
    "2": {
        name + suffix: f"table2_{name.replace('-', '_')}{suffix.replace('-', '_')}.toml"
        for name in ("wake-sleep", "nvil", "nvil-240", "avi20", "avi20-240") for suffix in ("", "-reduced")
    },
}


def main(argv=None) -> dict:
    """Train the chosen row from its config and evaluate it; returns (and writes) the row's summary."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", choices=sorted(TABLES), required=True)
    ap.add_argument("--row", required=True, help="a row of the table (listed above)")
    ap.add_argument("--out", help="run directory (default runs/tableN-ROW)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--nll-samples", type=int, default=5000)
    ap.add_argument("--subset", type=int, help="evaluate on a random subset of the test set")
    ap.add_argument("--refine-steps", type=int, help="test-time refinement steps (default: the run's T)")
    ap.add_argument("--refine-samples", type=int, help="samples per test-time refinement step")
    ap.add_argument("--epochs", type=int, help="override the config's maximum epochs")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--data-dir")
    args = ap.parse_args(argv)
    rows = TABLES[args.table]
    if args.row not in rows:
        ap.error(f"table {args.table} has no row {args.row!r}; rows: {', '.join(rows)}")
    table = f"table{args.table}"
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


if __name__ == "__main__":
    main()
