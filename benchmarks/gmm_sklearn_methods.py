"""varinf's GaussianMixture methods against scikit-learn's on the same fitted parameters.

Fits varinf.classical.GaussianMixture (K = 3, n = 600, d = 3, seed 0; "full" and "diag"), copies the
fitted parameters into a sklearn.mixture.GaussianMixture (nothing refitted) and prints the largest
difference of each method on the training data and on 200 new points:

    python benchmarks/gmm_sklearn_methods.py
"""

from __future__ import annotations

import numpy as np
from sklearn import mixture as skm

from varinf.classical import GaussianMixture
from varinf.classical.datasets import make_gaussian_mixture


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), np.finfo(float).tiny)))


def main() -> None:
    X = make_gaussian_mixture(600, 3, 3, 1.2, 0)[0]
    X_new = make_gaussian_mixture(200, 3, 3, 1.2, 1)[0]
    print("| covariance | score_samples (rel.) | score, aic, bic (rel.) | predict_proba (abs.) | predict | sample(500) (abs.) |")
    print("|---|---|---|---|---|---|")
    for covariance_type in ("full", "diag"):
        gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
        sk = skm.GaussianMixture(3, covariance_type=covariance_type, random_state=0)
        sk.weights_, sk.means_, sk.covariances_ = gm.weights_, gm.means_, gm.covariances_
        sk.precisions_, sk.precisions_cholesky_, sk.n_features_in_ = gm.precisions_, gm.precisions_cholesky_, 3
        data = (X, X_new)
        samples = max(rel(gm.score_samples(D), sk.score_samples(D)) for D in data)
        scalars = max(rel(getattr(gm, m)(D), getattr(sk, m)(D)) for D in data for m in ("score", "aic", "bic"))
        proba = max(float(np.abs(gm.predict_proba(D) - sk.predict_proba(D)).max()) for D in data)
        labels = all((gm.predict(D) == sk.predict(D)).all() for D in data)
        (xs, ys), (xs_sk, ys_sk) = gm.sample(500), sk.sample(500)
        draws = float(np.abs(xs - xs_sk).max()) if (ys == ys_sk).all() else float("nan")
        print(f"| {covariance_type} | {samples:.1e} | {scalars:.1e} | {proba:.1e} | "
              f"{'identical' if labels else 'DIFFER'} | {draws:.1e} |")


if __name__ == "__main__":
    main()
