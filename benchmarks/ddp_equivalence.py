"""Do N gloo processes reproduce one process's parameters? And would the check notice if they did not?

For each method, one epoch or two on sklearn's digits (1197 training rows, batch 100: 12 updates
per epoch) in one process, then in ``--processes`` processes three ways:

    data-parallel   varinf as shipped (global-batch noise, weighted gradient all-reduce)
    own-noise       each process draws the noise of its own rows only (the shard context disabled)
    summed-grads    gradients summed over processes instead of averaged

and the largest |Δ| / (1 + |θ|) over every tensor of the last checkpoint (weights, NVIL's moments,
optimizer moments) against the one-process run. tests/test_distributed.py asserts ≤ 1e-5 for the
first; the other two show the size of the errors the test would catch.

    python benchmarks/ddp_equivalence.py
"""

from __future__ import annotations

import argparse
import datetime
import os
import socket
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from varinf import distributed, training
from varinf.checkpoint import read_checkpoint
from varinf.config import make_config

SMALL = dict(dataset="digits", hidden=(32,), latent_dim=8, batch_size=100, threads=1, patience=0, seed=3)
RUNS = {"vae": dict(SMALL, method="vae", epochs=2),
        "gbvi": dict(SMALL, method="gbvi", epochs=1, refine_steps=3, refine_samples=4, samples=2, lr=3e-3),
        "nvil": dict(SMALL, method="nvil", model="sbn", epochs=2),
        "avi": dict(SMALL, method="avi", model="sbn", epochs=1, refine_steps=3, refine_samples=4, samples=2)}
VARIANTS = ("data-parallel", "own-noise", "summed-grads")


def _worker(rank: int, world: int, port: int, root: str, variant: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    if variant == "own-noise":
        training.Stream = lambda generator, shard: generator      # drop the shard: each process its own noise
    if variant == "summed-grads":
        init = distributed.GradSync.__init__
        distributed.GradSync.__init__ = lambda self, weight, ctx: init(self, 1.0, ctx)
    try:
        for name, settings in RUNS.items():
            training.train(make_config(**settings), Path(root) / f"{name}-{variant}", progress=False)
    finally:
        dist.destroy_process_group()


def scaled_difference(a: Path, b: Path) -> float:
    ta, _ = read_checkpoint(a / "checkpoints", "last")
    tb, _ = read_checkpoint(b / "checkpoints", "last")
    return max(((ta[k].double() - tb[k].double()).abs() / (1 + ta[k].double().abs())).max().item()
               for k in ta if ta[k].is_floating_point())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--processes", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, settings in RUNS.items():
            training.train(make_config(**settings), root / f"{name}-1", progress=False)
        for variant in VARIANTS:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            mp.spawn(_worker, args=(args.processes, port, str(root), variant), nprocs=args.processes, join=True)
        print(f"date {datetime.date.today()}  torch {torch.__version__}  {args.processes} gloo processes × 1 thread "
              "vs 1 process; max |Δ| / (1 + |θ|) over the last checkpoint")
        print()
        print("| method | updates | " + " | ".join(VARIANTS) + " |")
        print("|---|---|" + "---|" * len(VARIANTS))
        for name, settings in RUNS.items():
            diffs = [scaled_difference(root / f"{name}-1", root / f"{name}-{v}") for v in VARIANTS]
            print(f"| {name} | {12 * settings['epochs']} | " + " | ".join(f"{d:.1e}" for d in diffs) + " |")


if __name__ == "__main__":
    main()
