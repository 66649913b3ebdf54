"""Synthetic data for the classical models' tests, examples and benchmarks."""

from __future__ import annotations

import numpy as np

__all__ = ["make_gaussian_mixture"]


def make_gaussian_mixture(n: int = 600, d: int = 3, k: int = 3, sep: float = 1.2, seed: int = 0,
                          weight_concentration: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """n points from k full-covariance Gaussians: ``(X (n, d), z (n,))``.

    Means ~ N(0, sep² I), covariances A Aᵀ / d + 0.3 I with A of standard normals. Component
    labels are uniform, or drawn with weights ~ Dirichlet(weight_concentration · 1) when given.
    A small ``sep`` gives overlapping components (EM then needs tens of iterations).
    """
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=sep, size=(k, d))
    A = rng.normal(size=(k, d, d)) / np.sqrt(d)
    covs = A @ A.transpose(0, 2, 1) + 0.3 * np.eye(d)
    if weight_concentration is None:
        z = rng.choice(k, size=n)
    else:
        z = rng.choice(k, size=n, p=rng.dirichlet(weight_concentration * np.ones(k)))
    L = np.linalg.cholesky(covs)
    X = means[z] + np.einsum("nij,nj->ni", L[z], rng.normal(size=(n, d)))
    return X, z
