"""AVI with undamped (Hjelm et al. 2015 Eq. 9) and damped refinement steps: bounds after the same training.

    python benchmarks/avi_rate.py --rates 1 0.3 0.1 --images 30000 --threads 1

Trains the linear SBN 784-200 of ``configs/table2_avi20_reduced.toml`` (AVI, T = 5, N = 10, 5
M-step samples, Adam 3e-4, batch 10) from the same initialisation on the first ``--images``
binarized-MNIST training images (one pass) for each AVI step γ (``avi_rate``), then reports on
``--valid`` validation images: the bound of the refined q̃ (the method's own validation bound),
the bound of the encoder's q_φ, and the NLL by importance sampling with q_φ (k = ``--k``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from varinf.config import make_config
from varinf.data import iterate_batches
from varinf.objectives import elbo_and_log_marginal
from varinf.training import build_method, optimizers_for

REPO = Path(__file__).resolve().parents[1]


def run(rate: float, images: int, valid: int, k: int, data_dir: str | None) -> dict:
    cfg = make_config(REPO / "configs" / "table2_avi20_reduced.toml", avi_rate=rate, data_dir=data_dir)
    dataset, model, method = build_method(cfg, torch.device("cpu"))
    optimizers = optimizers_for(cfg, method)
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()
    for xb in iterate_batches(dataset.split("train")[:images], cfg.batch_size, generator=gen):
        method.step(xb, gen, optimizers)
    seconds = time.perf_counter() - t0
    x = dataset.split("valid")[torch.randperm(dataset.split("valid").shape[0], generator=gen)[:valid]]
    with torch.no_grad():
        refined = method.validation_bound(x, 1, gen).mean().item()
        elbo, log_px = elbo_and_log_marginal(model, model.q(*model.encode(x)), x, k, 100, gen)
    return {"rate": rate, "refined_bound": refined, "encoder_bound": elbo.mean().item(),
            "nll": -log_px.mean().item(), "train_seconds": seconds}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rates", type=float, nargs="+", default=[1.0, 0.3, 0.1])
    ap.add_argument("--images", type=int, default=30000)
    ap.add_argument("--valid", type=int, default=1000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--data-dir")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"| AVI step γ | refined q̃ bound | encoder q_φ bound | NLL (k = {args.k}, q_φ) | training s |")
    print("|---:|---:|---:|---:|---:|")
    for rate in args.rates:
        r = run(rate, args.images, args.valid, args.k, args.data_dir)
        print(f"| {rate:g} | {r['refined_bound']:.2f} | {r['encoder_bound']:.2f} | {r['nll']:.2f} | "
              f"{r['train_seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
