"""GBVI's first updates with the paper's RMSprop 3e-3, with and without a learning-rate warm-up.

    python benchmarks/gbvi_warmup.py --batches 200 --warmup 0 500 --threads 1
    python benchmarks/gbvi_warmup.py --config configs/table1_vae.toml --batches 300 --warmup 0 500 --threads 1

``--config``: another row's settings file (its method, samples and network) with the same RMSprop 3e-3.

Trains the Table 1 network (784-500-200 softplus, batch 100) with GBVI on binarized MNIST from the
same initialisation for ``--batches`` updates per setting and prints the training bound of every
``--every``-th batch. The E-step uses the reduced T = N = 5 (``configs/table1_gbvi_reduced.toml``)
to keep it quick; the optimizer is the paper's (``configs/table1_gbvi20.toml``: RMSprop 3e-3).
Why: torch's RMSprop starts its mean square at 0, so its first update is ≈ 10·lr per weight.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from varinf.config import make_config
from varinf.data import iterate_batches
from varinf.training import build_method, optimizers_for

REPO = Path(__file__).resolve().parents[1]


def first_updates(warmup: int, batches: int, data_dir: str | None,
                  config: str | Path = REPO / "configs" / "table1_gbvi_reduced.toml") -> list[float]:
    """Training bound (nats, mean over the batch) of the first ``batches`` updates of ``config``'s method."""
    cfg = make_config(config, optimizer="rmsprop", lr=3e-3,
                      warmup_steps=warmup, data_dir=data_dir)
    dataset, model, method = build_method(cfg, torch.device("cpu"))
    optimizers = optimizers_for(cfg, method)
    gen = torch.Generator().manual_seed(cfg.seed)
    bounds = []
    while len(bounds) < batches:                                        # epochs of shuffled minibatches
        for xb in iterate_batches(dataset.split("train"), cfg.batch_size, generator=gen):
            bounds.append(float(method.step(xb, gen, optimizers)))
            if len(bounds) == batches or not math.isfinite(bounds[-1]):
                return bounds
    return bounds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--warmup", type=int, nargs="+", default=[0, 500])
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--data-dir")
    ap.add_argument("--config", default=str(REPO / "configs" / "table1_gbvi_reduced.toml"),
                    help="settings file of the row (default configs/table1_gbvi_reduced.toml)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for warmup in args.warmup:
        bounds = first_updates(warmup, args.batches, args.data_dir, args.config)
        shown = {i + 1: b for i, b in enumerate(bounds) if i < 3 or (i + 1) % args.every == 0 or i == len(bounds) - 1}
        print(f"RMSprop 3e-3, warm-up {warmup} updates: " +
              ", ".join(f"batch {k}: {v:.4g}" for k, v in shown.items()))


if __name__ == "__main__":
    main()
