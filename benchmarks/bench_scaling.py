"""Data-parallel throughput on one machine: 1 process × T threads against P processes × 1 thread (gloo).

Hjelm et al. (2015) Table 1's network (784-500-200 softplus) on the first ``--examples``
binarized-MNIST training images, batch 100 (global), one epoch per contender after a warm-up.
For the multi-process run every process times the time it spends in the gradient all-reduce
(``varinf.distributed.GradSync``: flatten, all-reduce, unflatten, including the wait for the
slower process) against its whole epoch: the communication share of a step.

    python benchmarks/bench_scaling.py --data-dir ../shared/data --examples 3000
    python benchmarks/bench_scaling.py --methods vae,gbvi --processes 2 --threads 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from varinf import distributed
from varinf.config import make_config
from varinf.data import load_dataset
from varinf.infer import make_optimizers
from varinf.models import VAEConfig
from varinf.training import build_model, method_for, train_epoch

SETTINGS = {"vae": dict(method="vae"),
            "gbvi": dict(method="gbvi", refine_steps=5, refine_samples=5, samples=5)}   # T = N = 5: short


def epoch_seconds(method_name: str, x: torch.Tensor, batch: int) -> tuple[float, float, int]:
    """(seconds of one epoch, seconds inside GradSync, steps) in this process, after a warm-up epoch slice."""
    cfg = make_config(dataset="binarized-mnist", batch_size=batch, lr=1e-3, **SETTINGS[method_name])
    model = build_model(VAEConfig(data_dim=784, latent_dim=200, hidden=(500,), activation="softplus"), 0,
                        torch.device("cpu"))
    method = method_for(cfg, model, 784)
    optimizers = make_optimizers(method, cfg.optimizer, cfg.lr)
    gen = torch.Generator().manual_seed(0)
    train_epoch(method, optimizers, x[: 4 * batch], batch, gen)                         # warm-up
    spent = [0.0, 0]
    original = distributed.GradSync.__call__

    def timed_call(self, params):
        t0 = time.perf_counter()
        original(self, params)
        spent[0] += time.perf_counter() - t0
        spent[1] += 1

    distributed.GradSync.__call__ = timed_call
    try:
        t0 = time.perf_counter()
        train_epoch(method, optimizers, x, batch, gen)
        seconds = time.perf_counter() - t0
    finally:
        distributed.GradSync.__call__ = original
    return seconds, spent[0], spent[1]


def _worker(rank: int, world: int, port: int, args, out_path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        x = load_dataset("binarized-mnist", args.data_dir).split("train")[: args.examples]
        rows = {m: epoch_seconds(m, x, args.batch_size) for m in args.methods}
        if rank == 0:
            with open(out_path, "w") as fh:
                json.dump(rows, fh)
    finally:
        dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--examples", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="threads of the single-process contender")
    ap.add_argument("--methods", type=lambda s: [m for m in s.split(",") if m], default=["vae", "gbvi"])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    x = load_dataset("binarized-mnist", args.data_dir).split("train")[: args.examples]
    torch.set_num_threads(args.threads)
    single = {m: epoch_seconds(m, x, args.batch_size) for m in args.methods}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "rows.json")
        mp.spawn(_worker, args=(args.processes, port, args, path), nprocs=args.processes, join=True)
        with open(path) as fh:
            multi = json.load(fh)

    print(f"date {datetime.date.today()}  {platform.processor() or platform.machine()}  cores {os.cpu_count()}  "
          f"torch {torch.__version__}  examples {x.shape[0]}  global batch {args.batch_size}  "
          f"load average {os.getloadavg()[0]:.1f}")
    print()
    print(f"| method | 1 process × {args.threads} threads: examples/s | {args.processes} processes × 1 thread: "
          "examples/s | speed-up | all-reduce share of a step (rank 0) | ms per all-reduce |")
    print("|---|---|---|---|---|---|")
    for m in args.methods:
        s1, (s2, comm, steps) = single[m][0], multi[m]
        print(f"| {m} | {x.shape[0] / s1:.0f} | {x.shape[0] / s2:.0f} | {s1 / s2:.2f} | {comm / s2:.1%} | "
              f"{1e3 * comm / max(steps, 1):.2f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"single": single, "multi": multi, "threads": args.threads, "processes": args.processes},
                      fh, indent=2)


if __name__ == "__main__":
    main()
