"""Bayesian log-linear model (Eikema & Aziz 2020) on scikit-learn's wine data: mean-field and full-rank Gaussian q.

Fits varinf.classical.BayesianLogLinear three ways - mean field by BBVI (Rao-Blackwellised
score function with control variates), mean field by reparameterisation, full rank by
reparameterisation - prints test accuracy, and plots the Monte Carlo ELBO against iterations.
(The comparison with a NUTS reference posterior is benchmarks/bench_loglinear.py.)

    python examples/classical/loglinear_wine.py --out figures/classical_loglinear_elbo.png
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import load_wine  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from varinf.classical import BayesianLogLinear  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="figures/classical_loglinear_elbo.png")
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    X, y = load_wine(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=args.seed)
    mu, sd = Xtr.mean(0), Xtr.std(0)
    Xtr, Xte = (Xtr - mu) / sd, (Xte - mu) / sd
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, family, est, s in [("mean field, BBVI (RB + CV)", "mean_field", "rao-blackwell+cv", 32),
                                  ("mean field, reparam", "mean_field", "reparam", 8),
                                  ("full rank, reparam", "full_rank", "reparam", 8)]:
        m = BayesianLogLinear(family=family, estimator=est, max_iter=args.iters, tol=None, num_samples=s,
                              random_state=args.seed).fit(Xtr, ytr)
        it, elbo = zip(*m.elbo_trace_)
        ax.plot(it, elbo, label=label)
        print(f"{label:28s} final ELBO {elbo[-1]:9.3f}  test accuracy {(m.predict(Xte) == yte).mean():.3f}")
    ax.set_ylim(min(e for _, e in m.elbo_trace_[len(m.elbo_trace_) // 5:]) - 30, None)
    ax.set_xlabel("iteration")
    ax.set_ylabel("ELBO (MC estimate)")
    ax.set_title("Bayesian log-linear model, wine")
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
