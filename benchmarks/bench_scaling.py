"""Data-parallel throughput on one machine: 1 process × T threads against P processes × 1 thread (gloo).

Hjelm et al. (2015) Table 1's network (784-500-200 softplus) on the first ``--examples``
binarized-MNIST training images, batch 100 (global), one epoch per contender after a warm-up.
For the multi-process run every process times the time it spends in the gradient all-reduce
(``varinf.distributed.GradSync``: flatten, all-reduce, unflatten, including the wait for the
slower process) against its whole epoch: the communication share of a step.

    python benchmarks/bench_scaling.py --data-dir ../shared/data --examples 3000
    python benchmarks/bench_scaling.py --methods vae,gbvi --processes 2 --threads 2
    python benchmarks/bench_scaling.py --project       # the projection to 8 and 64 GPUs (arithmetic only)

**Projection** (``--project``; no timing). Per step a process computes F = b · f FLOPs (b its rows,
f the matrix-multiply FLOPs per example of the method, below) and all-reduces M = 4 · (number of
parameters) bytes once (``GradSync``: after every gradient, before any optimizer step, so nothing
overlaps). With a ring all-reduce of bus bandwidth BW and a tree latency α per hop:

    T_comp = F / R        T_comm(P) = 2 (P − 1) / P · M / BW + 2 ⌈log₂ P⌉ · α
    efficiency E(P) = T_comp / (T_comp + T_comm(P))      (weak scaling: b rows per GPU)

f per example (W = Σ fan-in · fan-out of a network's linear layers; forward 2W, backward 4W):
    vae          6 W_enc + 6 S W_dec
    gbvi         T N 4 W_dec (forward + backward to h per refinement step) + 6 N_M W_dec + 6 W_enc
    avi          T N 2 W_dec (forward only: importance weights) + 6 N_M W_dec + 6 W_enc
    nvil         6 W_enc + 6 S W_dec + 6 W_baseline
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
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


PROJECTED = ("table1_vae", "table1_gbvi20", "table2_nvil", "table2_avi20", "table2_avi20_240")
# (P, interconnect, bus bandwidth GB/s, latency per hop µs): one 8-GPU NVLink node; 8 such nodes on 400 Gb/s InfiniBand
LINKS = ((8, "NVLink, one node", 300.0, 10.0), (64, "8 nodes, 400 Gb/s InfiniBand per GPU", 40.0, 20.0))


def flops_per_example(cfg, model, method) -> float:
    """Matrix-multiply FLOPs of one training step per example (see the module docstring)."""
    def weights(module):
        return sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear))
    w_enc, w_dec = weights(model.encoder), weights(model.decoder)
    step = {"vae": 6 * w_enc + 6 * cfg.samples * w_dec,
            "gbvi": cfg.refine_steps * cfg.refine_samples * 4 * w_dec + 6 * cfg.samples * w_dec + 6 * w_enc,
            "avi": cfg.refine_steps * cfg.refine_samples * 2 * w_dec + 6 * cfg.samples * w_dec + 6 * w_enc,
            "nvil": 6 * w_enc + 6 * cfg.samples * w_dec
            + (6 * weights(method.state_module()) if method.state_module() is not None else 0)}
    return float(step[cfg.method])


def project(rate_tflops: float) -> None:
    from types import SimpleNamespace

    from varinf.training import model_config
    print(f"date {datetime.date.today()}  projection; compute rate R = {rate_tflops:g} TFLOP/s per GPU (assumed)")
    print()
    head = " | ".join(f"E({p}) [{name}: {bw:g} GB/s, α {lat:g} µs]" for p, name, bw, lat in LINKS)
    print(f"| config | rows per GPU b | MB all-reduced per step M | GFLOP per step F | T_comp ms | {head} |")
    print("|---|---|---|---|---|" + "---|" * len(LINKS))
    for name in PROJECTED:
        cfg = make_config(f"configs/{name}.toml").resolved()
        model = build_model(model_config(cfg, SimpleNamespace(dim=784, image_shape=(28, 28))), 0,
                            torch.device("cpu"))
        method = method_for(cfg, model, 784)
        params = sum(p.numel() for group in method.parameter_groups().values() for p in group)
        m_bytes = 4 * params
        f = cfg.batch_size * flops_per_example(cfg, model, method)
        t_comp = f / (rate_tflops * 1e12)
        effs = []
        for p, _, bw, lat in LINKS:
            t_comm = 2 * (p - 1) / p * m_bytes / (bw * 1e9) + 2 * math.ceil(math.log2(p)) * lat * 1e-6
            effs.append(t_comp / (t_comp + t_comm))
        print(f"| {name} | {cfg.batch_size} | {m_bytes / 1e6:.2f} | {f / 1e9:.2f} | {1e3 * t_comp:.3f} | "
              + " | ".join(f"{e:.0%}" for e in effs) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--examples", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="threads of the single-process contender")
    ap.add_argument("--methods", type=lambda s: [m for m in s.split(",") if m], default=["vae", "gbvi"])
    ap.add_argument("--json", default=None)
    ap.add_argument("--project", action="store_true", help="print the projection to 8 and 64 GPUs and stop")
    ap.add_argument("--rate", type=float, default=20.0, help="--project: compute TFLOP/s per GPU (default 20)")
    args = ap.parse_args()
    if args.project:
        project(args.rate)
        return

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
