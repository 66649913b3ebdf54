"""Cost of GBVI training (Hjelm et al. 2015 §4) against its floor: T decoder forward+backward passes on N samples.

One GBVI minibatch update is an E-step of T refinement steps, each one forward of log p(x, h)
on N samples per datapoint and one backward to h (``varinf.refinement.refine``), then the
M-step (one forward+backward with weight gradients on the M-step's samples) and the encoder
step (KL of Eq. 6). The floor counted here is the E-step's irreducible work:

    floor = T × [forward of log p(x, h) on (N, B, K) samples + backward to h]

timed on the same batches, same threads, as a bare loop (no step rule, no bookkeeping). The
script reports seconds per batch of (a) the floor, (b) ``refine`` alone (the E-step) and
(c) the whole ``GBVI.step``, and the ratios (b)/(a) and (c)/(a); the target is (c)/(a) ≤ 1.2.
Contenders alternate for ``--rounds`` rounds; the median is reported.

    python benchmarks/bench_gbvi.py --batches 30 --rounds 3              # T = 20, N = 20 (the paper's)
    python benchmarks/bench_gbvi.py --batches 30 --refine-steps 5 --refine-samples 5 --samples 5
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import torch

from varinf.config import make_config
from varinf.data import load_dataset
from varinf.models import VAE, VAEConfig
from varinf.training import method_for, optimizers_for


def floor_batch(model, x, steps, n, gen):
    """T × (forward of log p(x, h) on N samples + backward to h): the E-step's irreducible work."""
    mu = torch.zeros(x.shape[0], model.latent_dim)
    for _ in range(steps):
        h = (mu + torch.randn(n, *mu.shape, generator=gen)).requires_grad_()
        torch.autograd.grad(model.log_joint(x, h).sum(), h)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--refine-steps", type=int, default=20)
    ap.add_argument("--refine-samples", type=int, default=20)
    ap.add_argument("--samples", type=int, default=20, help="M-step samples")
    ap.add_argument("--inference-rate", type=float, default=5e-3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    x_all = load_dataset("binarized-mnist", args.data_dir).split("train")
    batches = [x_all[i * args.batch_size:(i + 1) * args.batch_size] for i in range(args.batches)]
    torch.manual_seed(0)
    model = VAE(VAEConfig())                                  # 784-500-200 softplus (Table 1)
    cfg = make_config(dataset="binarized-mnist", method="gbvi", refine_steps=args.refine_steps,
                      refine_samples=args.refine_samples, samples=args.samples,
                      inference_rate=args.inference_rate, optimizer="rmsprop", lr=3e-3)
    method = method_for(cfg, model, 784)
    optimizers = optimizers_for(cfg, method)
    T, N = args.refine_steps, args.refine_samples

    def run_floor(gen):
        for xb in batches:
            floor_batch(model, xb, T, N, gen)

    def run_estep(gen):
        for xb in batches:
            method.e_step(xb, gen)

    def run_step(gen):
        for xb in batches:
            method.step(xb, gen, optimizers)

    contenders = {"floor": run_floor, "e_step": run_estep, "gbvi_step": run_step}
    times = {k: [] for k in contenders}
    run_step(torch.Generator().manual_seed(99))              # warm-up
    for r in range(args.rounds):
        for name, fn in contenders.items():
            gen = torch.Generator().manual_seed(r)
            t0 = time.perf_counter()
            fn(gen)
            times[name].append((time.perf_counter() - t0) / args.batches)
    med = {k: statistics.median(v) for k, v in times.items()}
    n_train = x_all.shape[0]
    report = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "hardware": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
                    f"torch {torch.__version__} threads={torch.get_num_threads()}",
        "settings": {"T": T, "N_refine": N, "N_mstep": args.samples, "batch": args.batch_size,
                     "batches": args.batches, "rounds": args.rounds},
        "seconds_per_batch": med,
        "all_rounds": times,
        "ratio_estep_to_floor": med["e_step"] / med["floor"],
        "ratio_step_to_floor": med["gbvi_step"] / med["floor"],
        "projected_epoch_seconds": med["gbvi_step"] * n_train / args.batch_size,
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
