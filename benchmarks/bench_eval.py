"""Seconds of the importance-sampled test evaluation (``varinf eval``) against its compute floors.

The model is Hjelm et al. (2015) Table 1's VAE (784-500-200 softplus; ``--run RUN_DIR`` loads a
trained one instead, e.g. the CNN of configs/vae2d_cnn_mnist.toml); the data are ``--points``
random binarized-MNIST test images; every point gets k = ``--nll-samples`` importance samples
(5000 in the protocol of Burda et al. 2016).

    matmul floor      = decoder FLOPs / GEMM rate,   decoder FLOPs = k · points · (FLOPs of one decoder
                        pass, counted by torch.utils.flop_counter: matmuls and convolutions; the
                        encoder's one pass per point is negligible)
    elementwise floor = k · points · (T · t_T + K · t_N)

with the rate of a large float32 GEMM, t_T the time per element of softplus and t_N per normal draw
measured on chunk-sized tensors, all in the same run; T counts the transcendental outputs of one
pass (the decoder's own softplus/exp/log/tanh/elu units, counted by dispatch, plus the D log
normalisers of the Bernoulli likelihood) and K the latent draws. Elementwise work is compute bound
on a CPU (one exp and one log1p per element), so no schedule can hide it behind the matmuls of one
core: the sum of the two floors is what one process cannot beat. Each contender (a chunk size,
i.e. decoder-output floats per chunk of samples) runs ``--rounds`` times in turn; the median is
reported. ``--profile`` adds torch.profiler's table of where the time goes for the default chunk.

    python benchmarks/bench_eval.py --data-dir ../shared/data --points 40 --rounds 3 --threads 1
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from bench_gpu import _sync, gemm_gflops as matmul_gflops      # the same GEMM rate and device sync
from varinf.data import load_dataset
from varinf.evaluate import CHUNK_FLOATS, _chunk, evaluate_model
from varinf.models import VAEConfig
from varinf.training import build_model, load_model


TRANSCENDENTAL = {torch.ops.aten.softplus.default, torch.ops.aten.exp.default, torch.ops.aten.log.default,
                  torch.ops.aten.log1p.default, torch.ops.aten.tanh.default, torch.ops.aten.elu.default,
                  torch.ops.aten.sigmoid.default}


class _CountTranscendental(TorchDispatchMode):
    """Counts the output elements of transcendental ops (softplus, exp, log, ...) run under it."""

    def __init__(self):
        super().__init__()
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in TRANSCENDENTAL:
            self.elements += out.numel()
        return out


@torch.no_grad()
def per_pass(model) -> tuple[int, int]:
    """(FLOPs, transcendental outputs) of one decoder pass, the likelihood's D normalisers included."""
    z = torch.zeros(1, model.latent_dim, device=next(model.parameters()).device)
    counter, count = FlopCounterMode(display=False), _CountTranscendental()
    with counter, count:
        model.decode(z)
    return counter.get_total_flops(), count.elements + model.config.data_dim


def elementwise_seconds(device: torch.device, rows: int, cols: int, reps: int = 20) -> tuple[float, float]:
    """Seconds per element of softplus and of a normal draw, on (rows, cols) tensors (a chunk's size)."""
    a = torch.randn(rows, cols, device=device)
    g = torch.Generator(device=device).manual_seed(0)
    out = []
    for fn in (lambda: torch.nn.functional.softplus(a), lambda: torch.randn(rows, cols, generator=g, device=device)):
        fn()
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        _sync(device)
        out.append((time.perf_counter() - t0) / (reps * rows * cols))
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--run", default=None, help="a trained run directory (default: the untrained Table 1 VAE)")
    ap.add_argument("--points", type=int, default=40)
    ap.add_argument("--nll-samples", type=int, default=5000)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--chunk-floats", type=_ints, default=(1_000_000, 40_000_000),
                    help="decoder-output floats per chunk to compare (default 1000000,40000000)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    if args.run:
        model = load_model(args.run, "best", args.device)[0]
    else:
        model = build_model(VAEConfig(data_dim=784, latent_dim=200, hidden=(500,), activation="softplus"), 0,
                            device).eval()
    test = load_dataset("binarized-mnist", args.data_dir).split("test")           # ordered by class: a random subset
    x = test[torch.randperm(test.shape[0], generator=torch.Generator().manual_seed(0))[: args.points]].to(device)
    batch = min(args.batch_size, x.shape[0])
    chunks = {f"{floats:,} floats": max(1, min(args.nll_samples, floats // (batch * x.shape[1])))
              for floats in args.chunk_floats}
    default = _chunk(args.nll_samples, batch, x.shape[1], device)

    def run(chunk: int):
        out = evaluate_model(model, x, nll_samples=args.nll_samples, batch_size=batch, chunk_size=chunk, seed=0)
        _sync(device)
        return out

    run(default) if args.points * args.nll_samples <= 10 ** 6 else evaluate_model(
        model, x[:2], nll_samples=200, batch_size=batch, chunk_size=default)          # warm-up
    rate_before = matmul_gflops(device)
    times = {name: [] for name in chunks}
    results = {}
    for r in range(args.rounds):
        for name, chunk in chunks.items():
            t0 = time.perf_counter()
            results[name] = run(chunk)
            times[name].append(time.perf_counter() - t0)
            print(f"round {r + 1}  chunk {chunk:5d} samples ({name}) {times[name][-1]:7.2f} s", flush=True)
    rate = max(rate_before, matmul_gflops(device))
    flops, transcendental = per_pass(model)
    passes = args.nll_samples * x.shape[0]
    work = flops * passes / 1e9
    floor = work / rate
    t_softplus, t_normal = elementwise_seconds(device, default * batch, x.shape[1])
    elementwise = passes * (transcendental * t_softplus + model.latent_dim * t_normal)
    first = next(iter(results.values()))
    spread = max((res["log_px"] - first["log_px"]).abs().max().item() for res in results.values())

    print()
    print(f"date {datetime.date.today()}  {platform.processor() or platform.machine()}  torch {torch.__version__}  "
          f"device {device}  threads {torch.get_num_threads()}  points {x.shape[0]}  k {args.nll_samples}  "
          f"batch {batch}")
    print(f"matmul rate {rate:.0f} GFLOP/s; work {work:.1f} GFLOP ({flops / 1e6:.2f} MFLOP per decoder pass); "
          f"matmul floor {floor:.2f} s; default chunk on {device.type}: {default} samples "
          f"({CHUNK_FLOATS.get(device.type, 0):,} floats)")
    print(f"elementwise: {transcendental} transcendental outputs per pass at {t_softplus * 1e9:.2f} ns (softplus), "
          f"{model.latent_dim} normal draws at {t_normal * 1e9:.2f} ns: elementwise floor {elementwise:.2f} s")
    print(f"test NLL {-first['log_px'].mean().item():.3f}; max |Δ log p̂| between chunk sizes {spread:.2e} nats")
    print()
    print("| chunk | samples per chunk | s (median) | × matmul floor | × (matmul + elementwise floor) |")
    print("|---|---|---|---|---|")
    for name, chunk in chunks.items():
        med = statistics.median(times[name])
        print(f"| {name} | {chunk} | {med:.2f} | {med / floor:.2f} | {med / (floor + elementwise):.2f} |")
    if args.profile:
        with torch.profiler.profile() as prof:
            evaluate_model(model, x[:batch], nll_samples=min(args.nll_samples, 500), batch_size=batch,
                           chunk_size=default)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"times": times, "chunks": chunks, "gflops": rate, "floor_s": floor,
                       "elementwise_floor_s": elementwise}, fh, indent=2)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(t) for t in text.split(",") if t)


if __name__ == "__main__":
    main()
