"""Run one row of seed 003's Table 1: train from its config, then evaluate the test bound and NLL.

    python benchmarks/table1.py --row gbvi-reduced            # -> runs/table1-gbvi-reduced/eval.json
    python benchmarks/table1.py --row vae --nll-samples 5000

Rows and configs:
    vae            configs/table1_vae.toml           paper settings (VAE row)
    gbvi20         configs/table1_gbvi20.toml        paper settings (GBVI_20 row)
    vae-reduced    configs/table1_vae_reduced.toml   about an hour on 2 CPU cores
    gbvi-reduced   configs/table1_gbvi_reduced.toml  about an hour on 2 CPU cores

The evaluation is ``varinf eval`` (k = ``--nll-samples`` importance samples per test point,
5000 by default, Burda et al. 2016): ``test_elbo``/``test_nll`` use the encoder's q;
``test_elbo_refined``/``test_nll_refined`` use q refined with the run's own T and γ (for a
``gbvi`` row, the numbers to set beside the paper's; for a ``vae`` row, T = ``--refine-steps``,
0 by default). The row's summary (bounds, NLL, epochs, wall time, hardware) is printed and
written to RUN_DIR/table1_row.json. Resumes an interrupted training run (``--resume``).
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
ROWS = {
    "vae": "table1_vae.toml",
    "gbvi20": "table1_gbvi20.toml",
    "vae-reduced": "table1_vae_reduced.toml",
    "gbvi-reduced": "table1_gbvi_reduced.toml",
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--row", choices=sorted(ROWS), required=True)
    ap.add_argument("--out", help="run directory (default runs/table1-ROW)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--nll-samples", type=int, default=5000)
    ap.add_argument("--subset", type=int, help="evaluate on a random subset of the test set")
    ap.add_argument("--refine-steps", type=int, help="test-time refinement steps (default: the run's T)")
    ap.add_argument("--epochs", type=int, help="override the config's maximum epochs")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--data-dir")
    args = ap.parse_args(argv)

    config = REPO / "configs" / ROWS[args.row]
    out = Path(args.out or REPO / "runs" / f"table1-{args.row}")
    cfg = make_config(config, epochs=args.epochs, threads=args.threads, data_dir=args.data_dir)
    t0 = time.perf_counter()
    result = train(cfg, out, resume=args.resume, progress=True)
    train_seconds = time.perf_counter() - t0
    ev = evaluate_run(out, nll_samples=args.nll_samples, subset=args.subset, data_dir=args.data_dir,
                      refine_steps=args.refine_steps, progress=True)
    row = {
        "row": args.row,
        "config": str(config.relative_to(REPO)),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "train_seconds_this_invocation": train_seconds,
        "train_seconds_total": sum(h["seconds"] for h in result.history),
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
    atomic_write_json(out / "table1_row.json", row)
    print(json.dumps(row, indent=2))
    return row


if __name__ == "__main__":
    main()
