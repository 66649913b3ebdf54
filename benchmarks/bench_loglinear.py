"""Bayesian log-linear model on scikit-learn's wine data: VI against a NUTS reference posterior.

Wine (178 x 13, 3 classes), features standardised on the training split, intercept added
(K = 3 x 14 = 42 weights), prior N(0, ``--prior-std``^2). Stratified 70/30 split. Reference: Pyro
NUTS (``--warmup`` + ``--draws`` draws, one chain). Fitted: mean-field q by BBVI
(Rao-Blackwellised score function with control variates) and by reparameterisation, full-rank q
by reparameterisation. Printed: RMSE of the posterior means and of the posterior standard
deviations against NUTS, the ratio mean(sd_q / sd_NUTS), test accuracy and test log predictive
density, and fit seconds. Writes the marginal means/sds scatter to ``--out``.

    python benchmarks/bench_loglinear.py --out figures/classical_loglinear.png
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import load_wine  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from varinf.classical.loglinear import BayesianLogLinear  # noqa: E402


def nuts_reference(X, y, n_classes, prior_std, warmup, draws, seed):
    import pyro
    import pyro.distributions as dist
    from pyro.infer import MCMC, NUTS

    Xd = torch.cat([torch.as_tensor(X), torch.ones(len(X), 1, dtype=torch.float64)], 1)
    yt = torch.as_tensor(y)

    def model():
        w = pyro.sample("w", dist.Normal(torch.zeros(n_classes, Xd.shape[1], dtype=torch.float64),
                                         prior_std).to_event(2))
        pyro.sample("y", dist.Categorical(logits=Xd @ w.T).to_event(1), obs=yt)

    pyro.set_rng_seed(seed)
    mcmc = MCMC(NUTS(model), num_samples=draws, warmup_steps=warmup, disable_progbar=True)
    mcmc.run()
    return mcmc.get_samples()["w"]                                            # (draws, C, F')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="figures/classical_loglinear.png")
    ap.add_argument("--prior-std", type=float, default=1.0)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--iters", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    X, y = load_wine(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=args.seed)
    mu, sd = Xtr.mean(0), Xtr.std(0)
    Xtr, Xte = (Xtr - mu) / sd, (Xte - mu) / sd
    print(f"# {datetime.date.today()} | {platform.processor() or platform.machine()} | torch {torch.__version__} "
          f"| 1 thread\n# command: python {' '.join(sys.argv)}\n")
    t0 = time.perf_counter()
    ref = nuts_reference(Xtr, ytr, 3, args.prior_std, args.warmup, args.draws, args.seed)
    t_nuts = time.perf_counter() - t0
    ref_mean, ref_sd = ref.mean(0).reshape(-1), ref.std(0).reshape(-1)
    Xte_d = torch.cat([torch.as_tensor(Xte), torch.ones(len(Xte), 1)], 1)
    p_ref = torch.softmax(torch.einsum("nf,scf->snc", Xte_d, ref), -1).mean(0).numpy()

    def metrics(p):
        return (p.argmax(1) == yte).mean(), np.log(p[np.arange(len(yte)), yte]).mean()

    acc, lpd = metrics(p_ref)
    print("| method | RMSE(mean) | RMSE(sd) | mean sd_q/sd_NUTS | test acc. | test log pred. density | seconds |")
    print("|---|---|---|---|---|---|---|")
    print(f"| NUTS reference ({args.warmup}+{args.draws}) | 0 | 0 | 1 | {acc:.3f} | {lpd:.4f} | {t_nuts:.1f} |")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    settings = [("mean field, BBVI (RB + CV)", "mean_field", "rao-blackwell+cv", 32),
                ("mean field, reparam", "mean_field", "reparam", 8),
                ("full rank, reparam", "full_rank", "reparam", 8)]
    for label, family, est, s in settings:
        m = BayesianLogLinear(family=family, estimator=est, prior_std=args.prior_std, max_iter=args.iters, tol=None, lr=0.02,
                              num_samples=s, random_state=args.seed).fit(Xtr, ytr)
        q_mean, q_sd = m.mean_.reshape(-1), m.cov_.diagonal().sqrt()
        acc, lpd = metrics(m.predict_proba(Xte, num_samples=2000))
        print(f"| {label} | {(q_mean - ref_mean).pow(2).mean().sqrt():.4f} | "
              f"{(q_sd - ref_sd).pow(2).mean().sqrt():.4f} | {(q_sd / ref_sd).mean():.3f} | {acc:.3f} | "
              f"{lpd:.4f} | {m.fit_time_:.1f} |")
        axes[0].scatter(ref_mean, q_mean, s=10, label=label)
        axes[1].scatter(ref_sd, q_sd, s=10, label=label)
    for ax, name in zip(axes, ["posterior mean", "posterior sd"]):
        lo, hi = ax.get_xlim()
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set_xlabel(f"NUTS {name}")
        ax.set_ylabel(f"VI {name}")
        ax.legend(fontsize=7)
    fig.suptitle("Bayesian log-linear model, wine (42 weights)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
