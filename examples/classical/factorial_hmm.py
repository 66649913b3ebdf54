"""Factorial HMM (Eikema & Aziz 2020; Ghahramani & Jordan 1997): EM with the exact, the structured
mean-field and the fully factorised mean-field E-step.

Draws T = 300 steps from a random FHMM with M = 3 chains of L = 2 states and D = 4 outputs,
fits varinf.classical.FactorialHMM with inference="exact", "mean_field" (structured) and "factorised"
from the same initialisation, and plots (left) the bound per time step after every E/M block, with the
exact log-likelihood of the true parameters for reference, and (right) the true state of chain 0
beside its posterior marginal under each fit.

    python examples/classical/factorial_hmm.py --out figures/classical_fhmm.png
"""

import argparse
import os
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from varinf.classical import FactorialHMM, FHMMParams, exact_posterior  # noqa: E402
from varinf.classical.fhmm import sample_fhmm  # noqa: E402
from varinf.errors import ConvergenceWarning  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="figures/classical_fhmm.png")
    ap.add_argument("--T", type=int, default=300)
    ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    true = FHMMParams.random(3, 2, 4, seed=args.seed, scale=1.5, stickiness=0.9)
    states, Y = sample_fhmm(true, args.T, seed=args.seed + 1)
    ll_true = exact_posterior(true, Y)["log_likelihood"] / args.T
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    fits = {}
    for inference in ("exact", "mean_field", "factorised"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fh = FactorialHMM(3, 2, inference=inference, max_iter=args.iters, tol=1e-6,
                              random_state=args.seed).fit(Y)
        fits[inference] = fh
        values = [v for _, v in fh.bound_trace_]
        axes[0].plot(np.arange(1, len(values) + 1) / 2, values, label=f"{inference} E-step")
        print(f"{inference:11s}: {fh.n_iter_} EM iterations, bound/T {fh.lower_bound_:.4f}, "
              f"exact log p(Y)/T at the fitted parameters {fh.log_likelihood(Y) / args.T:.4f}, "
              f"fit {fh.fit_time_:.2f} s")
    print(f"log p(Y)/T at the true parameters {ll_true:.4f}")
    axes[0].axhline(ll_true, color="k", ls="--", lw=1, label="log p(Y)/T, true params")
    axes[0].set_xlabel("EM iteration")
    axes[0].set_ylabel("bound per time step")
    axes[0].legend(fontsize=8)
    t = np.arange(min(100, args.T))
    axes[1].step(t, states[t, 0], where="mid", color="k", label="true s^0_t")
    for inference, fh in fits.items():
        post = exact_posterior(fh.params_, Y)["gamma"] if inference == "exact" else fh.posterior_["gamma"]
        # chains are identifiable only up to permutation: pick the fitted chain/state best matching chain 0
        best = max(((c, l_) for c in range(3) for l_ in range(2)),
                   key=lambda cl: np.corrcoef(post[:, cl[0], cl[1]], states[:, 0])[0, 1])
        axes[1].plot(t, post[t, best[0], best[1]], label=f"{inference}: q(chain {best[0]} = {best[1]})", alpha=0.8)
    axes[1].set_xlabel("t")
    axes[1].set_title("chain 0: true state and posterior marginal")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
