"""Factorial HMM: cost and accuracy of exact vs mean-field E-steps as the number of chains M grows.

For each M in ``--chains``: a random FHMM (L = ``--states``, D = ``--d`` outputs, T = ``--T``)
and a sequence drawn from it. Timed (median of ``--repeats``): one exact E-step
(forward-backward on L^M joint states, O(T L^{2M})) and one mean-field E-step of
``--sweeps`` sweeps (each O(M L^2 T)). Accuracy of mean field against exact: KL(q || p) =
log p(Y) - F, max |marginal error| over t, m, l, and the bound per time step.
The theoretical cost columns are T L^{2M} and sweeps * M L^2 T.

    python benchmarks/bench_fhmm.py --chains 1 2 3 4 5 6 --states 3 --T 200
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from varinf.classical.fhmm import FHMMParams, exact_posterior, mean_field_posterior, sample_fhmm


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chains", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    ap.add_argument("--states", type=int, default=3)
    ap.add_argument("--d", type=int, default=5)
    ap.add_argument("--T", type=int, default=200)
    ap.add_argument("--sweeps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"# {datetime.date.today()} | {platform.processor() or platform.machine()} | numpy {np.__version__} "
          f"| 1 BLAS thread\n# command: python {' '.join(sys.argv)}\n")
    print("| M | L^M | T L^{2M} | exact s | sweeps·M L² T | mean-field s | log p(Y)/T | F/T | KL(q‖p) | "
          "max marginal err |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    L, T = args.states, args.T
    with threadpool_limits(limits=1):
        for m in args.chains:
            params = FHMMParams.random(m, L, args.d, seed=args.seed + m, scale=1.0)
            _, Y = sample_fhmm(params, T, seed=args.seed + 100 + m)
            t_ex, ex = median_time(lambda: exact_posterior(params, Y), args.repeats)
            t_mf, mf = median_time(lambda: mean_field_posterior(params, Y, n_iter=args.sweeps, tol=0.0,
                                                                seed=args.seed), args.repeats)
            kl = ex["log_likelihood"] - mf["bound"]
            err = np.abs(ex["gamma"] - mf["gamma"]).max()
            print(f"| {m} | {L ** m} | {T * L ** (2 * m):.3g} | {t_ex:.4f} | {args.sweeps * m * L * L * T:.3g} | "
                  f"{t_mf:.4f} | {ex['log_likelihood'] / T:.4f} | {mf['bound'] / T:.4f} | {kl:.3f} | {err:.3f} |")


if __name__ == "__main__":
    main()
