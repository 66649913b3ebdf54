"""Gradient variance of the BBVI estimators (varinf.classical.bbvi) on the conjugate Gaussian-mean model.

Model: z_j ~ N(0, 1.5^2), x_nj ~ N(z_j, 1), K = ``--k`` components, N = ``--n`` datapoints;
q = MeanFieldNormal at a fixed point (posterior mean + 1, log s = -1). For each estimator
``--reps`` independent gradients with S = ``--samples`` draws each (the control variate's a*
uses another S independent draws) are drawn; printed: total variance sum_d Var(g_d), the factor
by which it is below the plain score-function estimator, and the max |mean - exact| / s.e.

    python benchmarks/bench_bbvi_variance.py --k 5 --n 20 --samples 10 --reps 2000
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import sys

import torch

from varinf.classical.bbvi import ESTIMATORS, GaussianMeanModel, MeanFieldNormal, estimator_gradient


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    g = torch.Generator().manual_seed(args.seed)
    model = GaussianMeanModel(0.5 + torch.randn(args.n, args.k, generator=g), prior_std=1.5, noise_std=1.0)
    mu, _ = model.posterior()
    params = torch.stack([mu + 1.0, torch.full_like(mu, -1.0)], 1)
    exact = model.exact_gradient(params)
    print(f"# {datetime.date.today()} | {platform.processor() or platform.machine()} | torch {torch.__version__} "
          f"| 1 thread\n# command: python {' '.join(sys.argv)}\n")
    print("| estimator | total variance sum_d Var(g_d) | reduction vs score | max abs(mean-exact)/s.e. |")
    print("|---|---|---|---|")
    base = None
    for name in ESTIMATORS:
        grads = torch.stack([estimator_gradient(name, model.log_joint, MeanFieldNormal(), params, args.samples, g,
                                                log_joint_terms=model.log_joint_terms) for _ in range(args.reps)])
        var = grads.var(0).sum().item()
        base = var if base is None else base
        z = ((grads.mean(0) - exact) / (grads.std(0) / math.sqrt(args.reps))).abs().max().item()
        print(f"| {name} | {var:.4g} | {base / var:.3g}x | {z:.2f} |")


if __name__ == "__main__":
    main()
