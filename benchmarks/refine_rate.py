"""Step size of the binary-latent refiners: how much T refinement steps raise the bound, per step size.

Trains a sigmoid belief network briefly on binarized MNIST (the encoder to start from), then, on
random validation images, refines the encoder's q with each refiner and step size and reports the
Monte Carlo ELBO of q̃ against the encoder's own (paired over images, same Monte Carlo draws count):

    python benchmarks/refine_rate.py --updates 3000 --images 500 --threads 1

The refiners are MPVI (mean-pass gradient steps, Hjelm et al. 2015 Eq. 7), STVI (straight-through
gradient steps, Eq. 8) with step size γ, and AVI (Eq. 9) with damping γ. Results: docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from varinf.config import make_config
from varinf.data import iterate_batches
from varinf.infer import make_optimizers
from varinf.contract import posterior
from varinf.objectives import entropy_bound
from varinf.refinement import AdaptiveImportanceSampling, MeanPassGradient, StraightThroughGradient
from varinf.training import build_method

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--updates", type=int, default=3000, help="training updates of the starting SBN (batch 10)")
    ap.add_argument("--images", type=int, default=500, help="random validation images to refine")
    ap.add_argument("--steps", type=int, default=20, help="refinement steps T")
    ap.add_argument("--hidden", default="", help="'' for the linear SBN, 240 for the (240) network")
    ap.add_argument("--rates", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3, 1.0])
    ap.add_argument("--samples", type=int, default=100, help="Monte Carlo samples per bound estimate")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    hidden = tuple(int(h) for h in args.hidden.split(",") if h)
    cfg = make_config(dataset="binarized-mnist", model="sbn", method="mean-pass", hidden=hidden, latent_dim=200,
                      lr=3e-4, batch_size=10, data_dir=args.data_dir, seed=0)
    dataset, model, method = build_method(cfg, torch.device("cpu"))
    optimizers = make_optimizers(method, cfg.optimizer, cfg.lr)
    gen = torch.Generator().manual_seed(0)
    done = 0
    while done < args.updates:
        for xb in iterate_batches(dataset.split("train"), 10, generator=gen):
            method.step(xb, gen, optimizers)
            done += 1
            if done >= args.updates:
                break
    valid = dataset.split("valid")
    x = valid[torch.randperm(valid.shape[0], generator=torch.Generator().manual_seed(1))[:args.images]]
    with torch.no_grad():
        q0 = posterior(model, x)                                                  # the encoder's q_φ
        base = entropy_bound(model, q0, x, args.samples, torch.Generator().manual_seed(2))
    print(f"SBN {'784-' + str(hidden[0]) + '-' if hidden else '784-'}200 after {args.updates} mean-pass updates; "
          f"encoder bound {base.mean():.2f} on {args.images} validation images; T = {args.steps}")
    print(f"{'refiner':18s} {'gamma':>7s} {'bound of q~':>12s} {'gain':>8s} {'± s.e.':>7s}")
    refiners = {
        "mpvi (Eq. 7)": lambda r: MeanPassGradient(args.steps, r),
        "stvi (Eq. 8)": lambda r: StraightThroughGradient(args.steps, r, samples=20),
        "avi (Eq. 9)": lambda r: AdaptiveImportanceSampling(args.steps, 20, min(r, 1.0)),
    }
    for name, make in refiners.items():
        for rate in args.rates:
            refined = make(rate).refine(model, q0, x, torch.Generator().manual_seed(3))
            with torch.no_grad():
                bound = entropy_bound(model, refined, x, args.samples, torch.Generator().manual_seed(2))
            gain = bound - base
            se = gain.std().item() / math.sqrt(gain.numel())
            print(f"{name:18s} {rate:7.3g} {bound.mean().item():12.2f} {gain.mean().item():8.2f} {se:7.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
