"""VAE epoch, GBVI₂₀ epoch and the k = 5000 evaluation on any device, each against its FLOP floor there.

Hjelm et al. (2015) Table 1's network (784-500-200 softplus, binarized MNIST), batch 100:

    vae      one epoch of the ``vae`` method (SGVB-B)      floor FLOPs = 6 · (W_enc + W_dec) · n
    gbvi20   one epoch of ``gbvi`` with T = N = 20 (E-step T refinement steps of N samples, M-step
             on N samples)                                 floor FLOPs = n · [T · N · 4 · W_dec      (forward +
                                                                              backward to h per step)
                                                                  + N · 6 · W_dec + 6 · W_enc]  (M- and φ-steps)
    eval     test ELBO / NLL with k = 5000 importance samples per point
                                                           floor FLOPs = 2 · W_dec · k · points

W_* = Σ fan-in · fan-out of the network's linear layers (one multiply-add = 2 FLOPs; backward
= 2 × forward). The floor is FLOPs / the device's float32 GEMM rate, measured in the same run on
a 4096² (GPU) or 2048² (CPU) product, with the run's TF32 setting. Data and generators live on
the device; ``--max-batches`` / ``--eval-points`` keep a smoke run short:

    python benchmarks/bench_gpu.py --device cpu --max-batches 3 --eval-points 4       # shows it works
    python benchmarks/bench_gpu.py --device cuda                                      # full epochs
    python benchmarks/bench_gpu.py --device cuda --tf32 --autocast bf16               # reduced precision
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time

import torch

from varinf.config import make_config
from varinf.data import load_dataset
from varinf.evaluate import evaluate_model
from varinf.infer import make_optimizers
from varinf.models import VAEConfig
from varinf.training import build_model, method_for, train_epoch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_gflops(device: torch.device, reps: int = 10) -> float:
    n = 4096 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def linear_weights(module: torch.nn.Module) -> int:
    """Σ fan-in · fan-out over the linear layers: multiply-adds of one forward pass per example."""
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear))


def timed(device: torch.device, fn) -> tuple[float, object]:
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--max-batches", type=int, default=None, help="batches per epoch (default: the full 50,000)")
    ap.add_argument("--eval-points", type=int, default=1000)
    ap.add_argument("--nll-samples", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tf32", action="store_true")
    ap.add_argument("--autocast", choices=["bf16"], default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32

    data = load_dataset("binarized-mnist", args.data_dir).to(device)          # resident on the device
    batch = 100
    x = data.split("train")[: None if args.max_batches is None else args.max_batches * batch]
    x_test = data.split("test")[: args.eval_points]
    mcfg = VAEConfig(data_dim=784, latent_dim=200, hidden=(500,), activation="softplus")
    rows = {}
    for name, settings in {"vae": dict(method="vae"),
                           "gbvi20": dict(method="gbvi", refine_steps=20, refine_samples=20, samples=20)}.items():
        cfg = make_config(dataset="binarized-mnist", batch_size=batch, lr=1e-3, device=args.device,
                          **settings).resolved()
        model = build_model(mcfg, 0, device)
        method = method_for(cfg, model, 784)
        optimizers = make_optimizers(method, cfg.optimizer, cfg.lr)
        gen = torch.Generator(device=device).manual_seed(0)
        train_epoch(method, optimizers, x[: 2 * batch], batch, gen, autocast=args.autocast)      # warm-up
        seconds, bound = timed(device, lambda: train_epoch(method, optimizers, x, batch, gen,
                                                           autocast=args.autocast))
        w_enc, w_dec = linear_weights(model.encoder), linear_weights(model.decoder)
        n = x.shape[0]
        if name == "vae":
            flops = 6 * (w_enc + w_dec) * n
        else:
            t, s = cfg.refine_steps, cfg.refine_samples
            flops = n * (t * s * 4 * w_dec + cfg.samples * 6 * w_dec + 6 * w_enc)
        rows[name] = dict(seconds=seconds, gflop=flops / 1e9, examples=n, train_bound=bound)
    model = build_model(mcfg, 0, device).eval()
    evaluate_model(model, x_test[:2], nll_samples=100, batch_size=batch)                        # warm-up
    seconds, _ = timed(device, lambda: evaluate_model(model, x_test, nll_samples=args.nll_samples,
                                                      batch_size=batch))
    rows["eval"] = dict(seconds=seconds, gflop=2 * linear_weights(model.decoder) * args.nll_samples
                        * x_test.shape[0] / 1e9, examples=x_test.shape[0])
    rate = gemm_gflops(device)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor()
                                                                             or platform.machine())
    print(f"date {datetime.date.today()}  device {device} ({name})  torch {torch.__version__}  "
          f"threads {torch.get_num_threads()}  tf32 {args.tf32}  autocast {args.autocast}")
    print(f"float32 GEMM rate {rate:.0f} GFLOP/s")
    print()
    print("| work | examples | s | GFLOP | floor s | × floor |")
    print("|---|---|---|---|---|---|")
    for key, r in rows.items():
        floor = r["gflop"] / rate
        r.update(floor_s=floor, ratio=r["seconds"] / floor)
        print(f"| {key} | {r['examples']} | {r['seconds']:.2f} | {r['gflop']:.1f} | {floor:.3f} | {r['ratio']:.2f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": str(device), "name": name, "gflops": rate, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
