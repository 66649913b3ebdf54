"""Factorial HMM: cost and accuracy of exact vs mean-field E-steps as the number of chains M grows.

For each M in ``--chains``: a random FHMM (L = ``--states``, D = ``--d`` outputs, T = ``--T``)
and a sequence drawn from it. Timed (median of ``--repeats``): one exact E-step
(forward-backward on L^M joint states, O(T L^{2M})) and one mean-field E-step of
``--sweeps`` sweeps (each O(M L^2 T)). Accuracy of mean field against exact: KL(q || p) =
log p(Y) - F, max |marginal error| over t, m, l, and the bound per time step.
The theoretical cost columns are T L^{2M} and sweeps * M L^2 T.

Second table, for each M in ``--kl-chains``: KL(q || p(S|Y)) = log p(Y) - F in nats per sequence
(mean over ``--kl-seqs`` test sequences of length ``--kl-T`` drawn from the same random FHMM) for
the fully factorised mean field (FF), the structured mean field (SMF) - each from one random start,
best of ``--restarts`` starts, one start with deterministic annealing (``--anneal`` inverse temperatures
linearly from 0.05 to 1), and annealing with restarts - and for the amortised inference network
(bidirectional GRU, trained on ``--train-seqs`` other sequences of the same FHMM), alone and refined
by FF CAVI from its output. Amortisation gap = best per-sequence FF bound - network bound.

    python benchmarks/bench_fhmm.py --chains 1 2 3 4 5 6 --states 3 --T 200
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from varinf.classical.fhmm import (FHMMParams, exact_posterior, factorised_elbo_terms,
                                   factorised_mean_field_posterior, fit_fhmm_inference_network,
                                   mean_field_posterior, sample_fhmm)


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
    ap.add_argument("--kl-chains", type=int, nargs="*", default=[1, 2, 3, 4])
    ap.add_argument("--kl-T", type=int, default=100)
    ap.add_argument("--kl-seqs", type=int, default=4)
    ap.add_argument("--kl-sweeps", type=int, default=50)
    ap.add_argument("--restarts", type=int, default=5)
    ap.add_argument("--anneal", type=int, default=20)
    ap.add_argument("--train-seqs", type=int, default=64)
    ap.add_argument("--net-iters", type=int, default=400)
    args = ap.parse_args()
    torch.set_num_threads(1)
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
        if args.kl_chains:
            kl_table(args)


def kl_table(args):
    """Mean KL(q || p(S|Y)) per sequence for every approximation, M in --kl-chains (see the module doc)."""
    L, T = args.states, args.kl_T
    betas = np.linspace(0.05, 1.0, args.anneal)
    variants = {"1 start": {}, f"best of {args.restarts}": {"n_init": args.restarts},
                "annealed": {"betas": betas}, f"annealed, best of {args.restarts}": {"betas": betas,
                                                                                      "n_init": args.restarts}}
    posteriors = {"FF": factorised_mean_field_posterior, "SMF": mean_field_posterior}
    cols = [f"{name} {v}" for name in posteriors for v in variants]
    print(f"\n# KL(q || p(S|Y)) in nats per sequence, mean over {args.kl_seqs} sequences of T = {T}; L = {L}, "
          f"D = {args.d}; {args.kl_sweeps} sweeps max (tol 1e-6); network: {args.train_seqs} training sequences, "
          f"{args.net_iters} Adam steps\n")
    print("| M | log p(Y) | " + " | ".join(cols) + " | network | network + FF CAVI | amortisation gap | "
          "network train s | all s |")
    print("|---" * (len(cols) + 7) + "|")
    for m in args.kl_chains:
        t0 = time.perf_counter()
        params = FHMMParams.random(m, L, args.d, seed=args.seed + m, scale=1.0)
        test = np.stack([sample_fhmm(params, T, seed=args.seed + 1000 * m + i)[1] for i in range(args.kl_seqs)])
        train = np.stack([sample_fhmm(params, T, seed=args.seed + 1000 * m + 500 + i)[1]
                          for i in range(args.train_seqs)])
        t_net = time.perf_counter()
        net, _ = fit_fhmm_inference_network(params, train, n_iter=args.net_iters, seed=args.seed)
        t_net = time.perf_counter() - t_net
        with torch.no_grad():
            log_q = net(torch.as_tensor(test))                                                # (N, T, M, L)
        f_net = sum(factorised_elbo_terms(params, test, log_q).values()).numpy()
        log_p = np.array([exact_posterior(params, y)["log_likelihood"] for y in test])
        kls = {c: [] for c in cols}
        best_ff, refined = [], []
        for n, y in enumerate(test):
            for name, fn in posteriors.items():
                for v, kw in variants.items():
                    out = fn(params, y, n_iter=args.kl_sweeps, tol=1e-6, seed=args.seed + n, **kw)
                    kls[f"{name} {v}"].append(log_p[n] - out["bound"])
            best_ff.append(log_p[n] - min(kls[f"FF {v}"][-1] for v in variants))
            refined.append(factorised_mean_field_posterior(params, y, n_iter=args.kl_sweeps, tol=1e-6,
                                                           init_gamma=log_q[n].exp().numpy())["bound"])
        gap = np.mean(np.array(best_ff) - f_net)
        print(f"| {m} | {log_p.mean():.2f} | " + " | ".join(f"{np.mean(kls[c]):.2f}" for c in cols)
              + f" | {np.mean(log_p - f_net):.2f} | {np.mean(log_p - np.array(refined)):.2f} | {gap:.2f} | "
              f"{t_net:.1f} | {time.perf_counter() - t0:.1f} |", flush=True)


if __name__ == "__main__":
    main()
