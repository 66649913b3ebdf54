"""Seconds of the importance-sampled test evaluation (``varinf eval``) against its matrix-multiply floor.

The model is Hjelm et al. (2015) Table 1's VAE (784-500-200 softplus; ``--run RUN_DIR`` loads a
trained one instead); the data are the first ``--points`` binarized-MNIST test images; every
point gets k = ``--nll-samples`` importance samples (5000 in the protocol of Burda et al. 2016).

    floor = matmul FLOPs / matmul rate,   FLOPs = 2 · k · points · (K·H + H·D)   (decoder passes;
                                                                               the encoder's one pass is negligible)

with the rate of a large float32 GEMM timed in the same run (as ``bench_vae_loop.py`` does).
Each contender (a chunk size, i.e. decoder-output floats per chunk of samples) runs
``--rounds`` times in turn; the median is reported. ``--profile`` adds torch.profiler's table of
where the time goes for the default chunk.

    python benchmarks/bench_eval.py --data-dir ../shared/data --points 40 --rounds 3
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time

import torch

from bench_gpu import _sync, gemm_gflops as matmul_gflops      # the same GEMM rate and device sync
from varinf.data import load_dataset
from varinf.evaluate import CHUNK_FLOATS, _chunk, evaluate_model
from varinf.models import VAEConfig
from varinf.training import build_model, load_model


def decoder_gflop(model, points: int, k: int) -> float:
    """Matrix-multiply GFLOP of k decoder passes per point: 2 · Σ (fan-in · fan-out) per pass."""
    weights = sum(m.weight.numel() for m in model.decoder.modules() if isinstance(m, torch.nn.Linear))
    return 2 * weights * k * points / 1e9


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
    x = load_dataset("binarized-mnist", args.data_dir).split("test")[: args.points].to(device)
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
    work = decoder_gflop(model, x.shape[0], args.nll_samples)
    floor = work / rate
    first = next(iter(results.values()))
    spread = max((res["log_px"] - first["log_px"]).abs().max().item() for res in results.values())

    print()
    print(f"date {datetime.date.today()}  {platform.processor() or platform.machine()}  torch {torch.__version__}  "
          f"device {device}  threads {torch.get_num_threads()}  points {x.shape[0]}  k {args.nll_samples}  "
          f"batch {batch}")
    print(f"matmul rate {rate:.0f} GFLOP/s; work {work:.1f} GFLOP; floor {floor:.2f} s; "
          f"default chunk on {device.type}: {default} samples ({CHUNK_FLOATS.get(device.type, 0):,} floats)")
    print(f"test NLL {-first['log_px'].mean().item():.3f}; max |Δ log p̂| between chunk sizes {spread:.2e} nats")
    print()
    print("| chunk | samples per chunk | s (median) | × floor |")
    print("|---|---|---|---|")
    for name, chunk in chunks.items():
        med = statistics.median(times[name])
        print(f"| {name} | {chunk} | {med:.2f} | {med / floor:.2f} |")
    if args.profile:
        with torch.profiler.profile() as prof:
            evaluate_model(model, x[:batch], nll_samples=min(args.nll_samples, 500), batch_size=batch,
                           chunk_size=default)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"times": times, "chunks": chunks, "gflops": rate, "floor_s": floor}, fh, indent=2)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(t) for t in text.split(",") if t)


if __name__ == "__main__":
    main()
