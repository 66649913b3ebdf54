"""Sparse coding of 8x8 digits by MAP inference (Goodfellow et al. 2016 §19.3, Eqs. 19.14-19.16).

Learns a dictionary of ``--atoms`` unit-norm atoms on scikit-learn's 8x8 digits
with ``varinf.classical.SparseCoding`` (H-step: FISTA; W-step: least squares
with unit-norm columns) and draws the atoms, a few reconstructions and the
objective J after every H- and W-step.

    python examples/classical/sparse_coding_digits.py --out figures/classical_sparse_coding_digits.png
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from varinf.classical import SparseCoding  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="figures/classical_sparse_coding_digits.png")
    parser.add_argument("--atoms", type=int, default=64)
    parser.add_argument("--alpha", type=float, default=5.0)
    parser.add_argument("--max-iter", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    X = load_digits().data  # (1797, 64), pixel values 0..16
    model = SparseCoding(args.atoms, alpha=args.alpha, solver="fista", max_iter=args.max_iter, tol=1e-4,
                         random_state=args.seed)
    model.fit(X)
    H = model.codes_
    print(f"sparse coding: {model.n_iter_} sweeps, converged={model.converged_}, J/n={model.objective_:.3f}, "
          f"non-zeros per code={np.mean((H != 0).sum(1)):.1f} of {args.atoms}")

    fig = plt.figure(figsize=(12, 6.2))
    grid = fig.add_gridspec(8, 16)
    # atoms, ordered by usage
    order = np.argsort(-np.abs(H).sum(0))
    side = int(np.ceil(np.sqrt(args.atoms)))
    for i, k in enumerate(order):
        ax = fig.add_subplot(grid[i // side, i % side]) if side <= 8 else None
        if ax is None:
            break
        atom = model.components_[k].reshape(8, 8)
        lim = np.abs(atom).max()
        ax.imshow(atom, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.text(0.25, 0.97, f"{args.atoms} learned atoms (unit norm), most used first", ha="center")
    # reconstructions
    recon = H @ model.components_ + model.intercept_
    for j, n in enumerate([0, 1, 2, 3]):
        ax = fig.add_subplot(grid[2 * j:2 * j + 2, 9:11])
        ax.imshow(X[n].reshape(8, 8), cmap="gray_r")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(f"{(H[n] != 0).sum()} atoms", fontsize=8)
        ax = fig.add_subplot(grid[2 * j:2 * j + 2, 11:13])
        ax.imshow(recon[n].reshape(8, 8), cmap="gray_r")
        ax.set_xticks([])
        ax.set_yticks([])
        if j == 0:
            ax.set_title("recon.", fontsize=9)
    fig.text(0.62, 0.97, "digit / reconstruction", ha="center")
    ax = fig.add_subplot(grid[1:7, 14:16])
    values = -np.array([v for _, v in model.bound_trace_])
    ax.plot(np.arange(1, len(values) + 1) / 2, values, lw=1.5)
    ax.set_xlabel("sweep (H-step, W-step)")
    ax.set_ylabel("J(H, W) / n  (Eq. 19.16)")
    ax.set_title("objective never rises", fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.93, bottom=0.08, wspace=0.3, hspace=0.3)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
