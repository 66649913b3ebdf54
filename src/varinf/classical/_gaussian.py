"""Vectorised Gaussian-mixture kernels shared by EM (``em.py``) and CAVI (``cavi.py``).

Every quantity both algorithms need from the data is linear in the *features*

    f(x) = [ x_i x_j (i <= j) | x | 1 ]            (full covariance)
    f(x) = [ x_d^2             | x | 1 ]            (diagonal covariance)

of the data centred at its mean (``x = x_raw - shift``):

* the log of an unnormalised responsibility, b_k - (x - m_k)^T P_k (x - m_k) / 2,
  is ``f(x) @ c_k`` for a coefficient vector ``c_k`` built from (m_k, P_k, b_k);
* the expected sufficient statistics of q(z) (Neal & Hinton 1999, the statistics
  an M-step or a q(theta) update reads) are ``R^T @ F``: counts N_k, first moments
  sum_n r_nk x_n and second moments sum_n r_nk x_n x_n^T.

So one sweep over the data is two BLAS GEMMs (``F @ C`` and ``R^T @ F``) plus an
exp/log-sum-exp on the N x K matrix, done block-wise (a loop over blocks of
at most ``_CHUNK_COLS`` samples, never over datapoints). ``F`` is stored transposed,
(width, N), built once per fit and cached while it fits in ``_CACHE_BYTES``;
otherwise each block's features are rebuilt on the fly.

Numerics: expanding the quadratic form trades per-component centring for one
GEMM; centring the data at its mean keeps the cancellation error at
``eps * ||L_k^T (x - shift)||^2`` (L_k L_k^T = P_k), negligible unless a
component is many orders of magnitude narrower than its distance to the data
mean.
"""

from __future__ import annotations

import math

import numpy as np

from varinf.errors import DataError

INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")

_CACHE_BYTES = 512 * 2**20
_CHUNK_COLS = 16384  # samples per block (cache-sized; measured best single-threaded)
_BLOCK_ELEMENTS = 2**20  # at most this many entries in a (K, block) temporary
LOG_2PI = math.log(2.0 * math.pi)


class QuadraticFeatures:
    """Centred quadratic/linear/constant features of ``X`` for a covariance type.

    Stored transposed, ``FT`` of shape (width, n_samples), so that the per-sample
    reductions over the K components (max, sum) run along the leading axis on
    contiguous rows, and blocks of samples are column slices.
    """

    def __init__(self, X: np.ndarray, covariance_type: str, *, n_components: int = 1,
                 shift: np.ndarray | None = None, chunk_size: int | None = None, cache_bytes: int | None = None):
        self.X = X
        self.covariance_type = covariance_type
        self.n_samples, self.n_features = X.shape
        self.shift = X.mean(axis=0) if shift is None else np.asarray(shift, dtype=np.float64)
        d = self.n_features
        if covariance_type == "full":
            self._iu = np.triu_indices(d)
            self.n_quad = d * (d + 1) // 2
        elif covariance_type == "diag":
            self.n_quad = d
        else:  # pragma: no cover - validated by the estimators
            raise ValueError(covariance_type)
        self.width = self.n_quad + d + 1
        if chunk_size is None:
            chunk_size = max(1, min(_CHUNK_COLS, _BLOCK_ELEMENTS // max(1, int(n_components))))
        self.chunk_size = int(chunk_size)
        fits = self.n_samples * self.width * 8 <= (_CACHE_BYTES if cache_bytes is None else cache_bytes)
        self._FT = self._build(X) if fits else None

    def _build(self, Xb: np.ndarray) -> np.ndarray:
        """(width, n) matrix: rows x_i x_j (i <= j, row-major over i) or x_d^2, then x, then 1."""
        xt = np.ascontiguousarray((Xb - self.shift).T)
        d, q = self.n_features, self.n_quad
        FT = np.empty((self.width, xt.shape[1]))
        if self.covariance_type == "full":
            row = 0
            for i in range(d):  # loop over features, not datapoints
                np.multiply(xt[i], xt[i:], out=FT[row:row + d - i])
                row += d - i
        else:
            np.square(xt, out=FT[:q])
        FT[q:q + d] = xt
        FT[-1] = 1.0
        return FT

    def chunks(self):
        """Yield the (width, block) feature matrix block by block (views when cached)."""
        step = self.chunk_size
        for start in range(0, self.n_samples, step):
            if self._FT is not None:
                yield self._FT[:, start:start + step]
            else:
                yield self._build(self.X[start:start + step])

    # ------------------------------------------------------------ coefficients
    def coefficients(self, means_c: np.ndarray, precisions: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """Matrix ``C`` (width, K) with ``f(x) @ C[:, k] = bias_k - (x-m_k)^T P_k (x-m_k) / 2``.

        ``means_c`` are the centres in the centred frame (``mean - shift``);
        ``precisions`` is (K, D, D) for "full" and (K, D) for "diag".
        """
        k, d, q = means_c.shape[0], self.n_features, self.n_quad
        C = np.empty((self.width, k))
        if self.covariance_type == "full":
            pm = np.einsum("kij,kj->ki", precisions, means_c)
            quad_m = np.einsum("ki,ki->k", pm, means_c)
            iu0, iu1 = self._iu
            weight = np.where(iu0 == iu1, -0.5, -1.0)
            C[:q] = (precisions[:, iu0, iu1] * weight).T
        else:
            pm = precisions * means_c
            quad_m = np.einsum("kd,kd->k", pm, means_c)
            C[:q] = -0.5 * precisions.T
        C[q:q + d] = pm.T
        C[-1] = bias - 0.5 * quad_m
        return C

    def unpack(self, stats: np.ndarray):
        """Split ``R^T F`` (K, width) into counts (K,), sums (K, D), second moments."""
        d, q = self.n_features, self.n_quad
        nk = stats[:, -1].copy()
        s1 = stats[:, q:q + d].copy()
        if self.covariance_type == "full":
            s2 = np.empty((stats.shape[0], d, d))
            iu0, iu1 = self._iu
            s2[:, iu0, iu1] = stats[:, :q]
            s2[:, iu1, iu0] = stats[:, :q]
        else:
            s2 = stats[:, :q].copy()
        return nk, s1, s2


def responsibility_pass(feats: QuadraticFeatures, C: np.ndarray):
    """One sweep over the data: q(z_n = k) = softmax_k(f(x_n) @ C) and its statistics.

    Returns ``(sum_n log sum_k exp a_nk, H(q), R^T F)`` where ``a = F @ C`` and
    ``H(q) = -sum_nk r_nk log r_nk`` is the entropy of the responsibilities.
    Works on transposed blocks (K, block) so the reductions over k are row-wise.
    """
    log_norm = 0.0
    entropy = 0.0
    CT = np.ascontiguousarray(C.T)
    stats = np.zeros((C.shape[1], feats.width))
    for FT in feats.chunks():
        AT = CT @ FT                       # (K, b): log of unnormalised q(z)
        amax = AT.max(axis=0)
        AT -= amax
        RT = np.exp(AT)
        s = RT.sum(axis=0)
        RT /= s
        log_s = np.log(s)
        log_norm += float(amax.sum() + log_s.sum())
        # -sum_k r log r = -sum_k r (A - log s) = log s - sum_k r A   (sum_k r = 1)
        entropy += float(log_s.sum() - np.vdot(RT, AT))
        # (FT @ RT.T).T rather than RT @ FT.T: the same product, but threaded OpenBLAS 0.3.31 takes
        # ~300x longer on the latter (M=K, N=width, huge inner dimension, transposed B)
        stats += (FT @ RT.T).T
    return log_norm, entropy, stats


def log_prob_matrix(feats: QuadraticFeatures, C: np.ndarray) -> np.ndarray:
    """The (N, K) matrix ``F @ C`` of weighted log-densities, block by block."""
    out = np.empty((feats.n_samples, C.shape[1]))
    CT = np.ascontiguousarray(C.T)
    start = 0
    for FT in feats.chunks():
        out[start:start + FT.shape[1]] = (CT @ FT).T
        start += FT.shape[1]
    return out


def logsumexp_rows(A: np.ndarray) -> np.ndarray:
    amax = A.max(axis=1, keepdims=True)
    return (amax + np.log(np.exp(A - amax).sum(axis=1, keepdims=True)))[:, 0]


def scatter(nk: np.ndarray, s1: np.ndarray, s2: np.ndarray, centres: np.ndarray, covariance_type: str):
    """sum_n r_nk (x_n - c_k)(x_n - c_k)^T from the statistics (diagonal only for "diag")."""
    if covariance_type == "full":
        cs = np.einsum("ki,kj->kij", centres, s1)
        return s2 - cs - cs.transpose(0, 2, 1) + nk[:, None, None] * np.einsum("ki,kj->kij", centres, centres)
    return s2 - 2.0 * centres * s1 + nk[:, None] * centres**2


_ILL_DEFINED = (
    "Fitting the mixture failed because some components have an ill-defined covariance "
    "(singleton or collapsed samples). Decrease n_components, increase reg_covar, or scale the data."
)


def precisions_from_covariances(cov: np.ndarray, covariance_type: str):
    """Precisions P = cov^{-1} and log|P| through a Cholesky factor of ``cov``."""
    if covariance_type == "full":
        try:
            L = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError as exc:
            raise DataError(_ILL_DEFINED) from exc
        Linv = np.linalg.inv(L)
        prec = Linv.transpose(0, 2, 1) @ Linv
        logdet = -2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
        return prec, logdet
    if np.any(cov <= 0.0):
        raise DataError(_ILL_DEFINED)
    return 1.0 / cov, -np.log(cov).sum(axis=1)


def logdet_precisions(prec: np.ndarray, covariance_type: str) -> np.ndarray:
    if covariance_type == "full":
        try:
            L = np.linalg.cholesky(prec)
        except np.linalg.LinAlgError as exc:
            raise DataError("precisions must be symmetric positive definite.") from exc
        return 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
    if np.any(prec <= 0.0):
        raise DataError("precisions must be positive.")
    return np.log(prec).sum(axis=1)


def precisions_cholesky(prec: np.ndarray, covariance_type: str) -> np.ndarray:
    """scikit-learn's ``precisions_cholesky_``: upper-triangular U with P = U U^T."""
    if covariance_type == "full":
        flipped = np.linalg.cholesky(prec[:, ::-1, ::-1])
        return flipped[:, ::-1, ::-1]
    return np.sqrt(prec)


def initial_responsibilities(X: np.ndarray, n_components: int, init_params: str,
                             random_state: np.random.RandomState) -> np.ndarray:
    """Initial q(z) exactly as scikit-learn's ``BaseMixture._initialize_parameters`` draws it."""
    n = X.shape[0]
    if init_params == "kmeans":
        from sklearn.cluster import KMeans

        labels = KMeans(n_clusters=n_components, n_init=1, random_state=random_state).fit(X).labels_
        resp = np.zeros((n, n_components))
        resp[np.arange(n), labels] = 1.0
    elif init_params == "random":
        resp = random_state.uniform(size=(n, n_components))
        resp /= resp.sum(axis=1)[:, None]
    elif init_params == "random_from_data":
        resp = np.zeros((n, n_components))
        idx = random_state.choice(n, size=n_components, replace=False)
        resp[idx, np.arange(n_components)] = 1.0
    elif init_params == "k-means++":
        from sklearn.cluster import kmeans_plusplus

        resp = np.zeros((n, n_components))
        _, idx = kmeans_plusplus(X, n_components, random_state=random_state)
        resp[idx, np.arange(n_components)] = 1.0
    else:  # pragma: no cover - validated by the estimators
        raise ValueError(init_params)
    return resp


def statistics_of(feats: QuadraticFeatures, resp: np.ndarray) -> np.ndarray:
    """``R^T F`` for given responsibilities (used once, at initialisation)."""
    stats = np.zeros((resp.shape[1], feats.width))
    start = 0
    for FT in feats.chunks():
        stats += (FT @ resp[start:start + FT.shape[1]]).T
        start += FT.shape[1]
    return stats
