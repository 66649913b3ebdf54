"""MAP inference and sparse coding (Goodfellow, Bengio & Courville 2016 §19.3, Eqs. 19.9-19.16).

Model. A factorial Laplace prior on the code and a Gaussian likelihood,

    p(h_i) = lambda/2 exp(-lambda |h_i|)                                   (19.14)
    p(v | h) = N(v; W h + b, beta^-1 I)                                    (19.15)

MAP inference restricts q to a Dirac delta q(h|v) = delta(h - mu) (19.11);
dropping the terms of L that do not vary with mu leaves mu* = argmax log p(h=mu, v)
(19.12), the MAP code (19.13). With alpha = lambda / beta, -log p(H, V) / beta is,
up to a constant,

    J(H, W) = sum_ij alpha |H_ij| + 1/2 sum_ij (V - H W^T - b)_ij^2       (19.16)

(Goodfellow et al. write 19.16 with unit weights). Learning alternates (19.16 text):

* H-step: minimise J over H - a lasso per row, solved by ISTA or FISTA
  (proximal gradient, Beck & Teboulle 2009), vectorised over all rows;
* W-step: minimise J over W (and b) - least squares under unit-norm columns
  ||w_k|| <= 1 (the norm constraint Goodfellow et al. ask for, to rule out tiny H / huge W),
  solved exactly by block coordinate descent over the columns on the Gram
  statistics H^T H and H^T V (Mairal et al. 2009).

Both steps are exact block minimisations, so J never rises; the shared
coordinate-ascent loop tracks -J.

Scaling: scikit-learn's ``SparseCoder(transform_algorithm="lasso_cd",
transform_alpha=a)`` solves, per row, ``(1/(2 D)) ||x - D^T h||^2 + (a / D) ||h||_1``
(it passes ``alpha = a / n_features`` to ``Lasso``), i.e. 1/D times the per-row J
above with alpha = a: the minimisers coincide.

Array convention (scikit-learn's): ``components_`` is (n_components, n_features),
row k is the atom w_k (the k-th column of Goodfellow et al.'s W); codes H are
(n_samples, n_components).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin

from varinf.errors import ConfigError, DataError

from ._base import CoordinateAscent, _check_int, _check_real, check_data

__all__ = ["SparseCoding", "fista", "ista", "soft_threshold", "sparse_coding_objective"]


def soft_threshold(Z: np.ndarray, t: float) -> np.ndarray:
    """prox of t||.||_1: sign(z) max(|z| - t, 0) (the Laplace prior's MAP step, Eq. 19.14)."""
    return np.sign(Z) * np.maximum(np.abs(Z) - t, 0.0)


def sparse_coding_objective(X, codes, dictionary, alpha: float, intercept=None, *, per_row: bool = False):
    """J(H, W) = 1/2 ||X - H W^T - b||_F^2 + alpha ||H||_1   (Goodfellow et al. 2016 Eq. 19.16).

    ``dictionary`` is (n_components, n_features) (rows are atoms). Returns the
    total, or one value per row when ``per_row``.
    """
    R = X - codes @ dictionary
    if intercept is not None:
        R -= intercept
    rows = 0.5 * np.einsum("nd,nd->n", R, R) + alpha * np.abs(codes).sum(axis=1)
    return rows if per_row else float(rows.sum())


def _check_coding_inputs(X, dictionary, alpha, init):
    X = check_data(X)
    D = check_data(dictionary, name="dictionary")
    if D.shape[1] != X.shape[1]:
        raise DataError(f"dictionary has {D.shape[1]} features but X has {X.shape[1]}.")
    alpha = _check_real(alpha, "alpha", 0.0)
    if init is None:
        H = np.zeros((X.shape[0], D.shape[0]))
    else:
        H = np.array(init, dtype=np.float64)
        if H.shape != (X.shape[0], D.shape[0]):
            raise DataError(f"init must have shape {(X.shape[0], D.shape[0])}; got {H.shape}.")
    return X, D, alpha, H


def _proximal_gradient(X, D, alpha, H, max_iter, tol, accelerate, restart):
    """Shared ISTA/FISTA iteration on all rows at once (gradient of the smooth part: H G - X D^T)."""
    gram = D @ D.T
    XDt = X @ D.T
    lipschitz = float(np.linalg.eigvalsh(gram)[-1]) if gram.size else 0.0
    if lipschitz <= 0.0:  # all-zero dictionary: the codes do not change the fit
        return np.zeros_like(H), 0
    step = 1.0 / lipschitz
    thresh = alpha * step
    Y = H.copy()
    t = np.ones((H.shape[0], 1))
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        H_new = soft_threshold(Y - step * (Y @ gram - XDt), thresh)
        delta = H_new - H
        if accelerate:
            t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
            Y_next = H_new + ((t - 1.0) / t_new) * delta
            if restart:  # gradient restart, per row (O'Donoghue & Candes 2015)
                bad = np.einsum("nk,nk->n", Y - H_new, delta) > 0.0
                if bad.any():
                    t_new[bad] = 1.0
                    Y_next[bad] = H_new[bad]
            t, Y = t_new, Y_next
        else:
            Y = H_new
        H = H_new
        if np.linalg.norm(delta) <= tol * max(np.linalg.norm(H), np.finfo(float).tiny):
            break
    return H, n_iter


def ista(X, dictionary, alpha: float, *, init=None, max_iter: int = 1000, tol: float = 1e-8):
    """MAP codes by ISTA: H <- S_{alpha/L}(H - (H G - X D^T) / L), G = D D^T, L = ||G||_2.

    Minimises sum_n [1/2 ||x_n - h_n D||^2 + alpha ||h_n||_1] (Goodfellow et al. 2016 Eqs. 19.12,
    19.14-19.16 with a fixed dictionary ``D``, rows = atoms). Monotone; O(1/k).
    Stops when ||H_k - H_{k-1}||_F <= tol ||H_k||_F. Returns ``(codes, n_iter)``.
    """
    X, D, alpha, H = _check_coding_inputs(X, dictionary, alpha, init)
    return _proximal_gradient(X, D, alpha, H, _check_int(max_iter, "max_iter", 1),
                              _check_real(tol, "tol", 0.0), accelerate=False, restart=False)


def fista(X, dictionary, alpha: float, *, init=None, max_iter: int = 1000, tol: float = 1e-8,
          restart: bool = True):
    """MAP codes by FISTA (Beck & Teboulle 2009): ISTA steps taken from an extrapolated point

        H_k = S_{alpha/L}(Y_k - (Y_k G - X D^T)/L),  t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2,
        Y_{k+1} = H_k + (t_k - 1)/t_{k+1} (H_k - H_{k-1}),

    with a per-row gradient restart (``restart``). Same objective and stopping rule
    as [`ista`][varinf.classical.sparse_coding.ista]; O(1/k^2). Returns ``(codes, n_iter)``.
    """
    X, D, alpha, H = _check_coding_inputs(X, dictionary, alpha, init)
    return _proximal_gradient(X, D, alpha, H, _check_int(max_iter, "max_iter", 1),
                              _check_real(tol, "tol", 0.0), accelerate=True, restart=bool(restart))


def dictionary_step(gram_h, cross, dictionary, *, max_sweeps: int = 50, tol: float = 1e-10,
                    rng: np.random.RandomState | None = None, refill=None):
    """W-step: argmin_W ||V - H W^T||^2 s.t. ||w_k|| <= 1, by exact block coordinate descent.

    The objective restricted to atom k is A_kk ||w_k - u_k||^2 + const with
    u_k = w_k + (B_k - A_k. W) / A_kk (A = H^T H, B = H^T V), so its constrained
    minimiser is the projection u_k / max(1, ||u_k||). Atoms no code uses
    (A_kk = 0) do not enter J; they are re-drawn from ``refill`` rows (if given).
    Returns the new (n_components, n_features) dictionary.
    """
    W = dictionary.copy()
    diag = np.diag(gram_h).copy()
    for _ in range(max_sweeps):
        max_change = 0.0
        for k in range(W.shape[0]):  # loop over atoms (not datapoints)
            if diag[k] <= 0.0:
                if refill is not None and rng is not None:
                    v = refill[rng.randint(refill.shape[0])]
                    nrm = np.linalg.norm(v)
                    W[k] = v / nrm if nrm > 0 else rng.standard_normal(W.shape[1]) / np.sqrt(W.shape[1])
                continue
            u = W[k] + (cross[k] - gram_h[k] @ W) / diag[k]
            u /= max(1.0, float(np.linalg.norm(u)))
            max_change = max(max_change, float(np.abs(u - W[k]).max()))
            W[k] = u
        refill = None  # re-draw unused atoms only once per W-step
        if max_change <= tol:
            break
    return W


class SparseCoding(ClassNamePrefixFeaturesOutMixin, TransformerMixin, CoordinateAscent):
    """Sparse coding learned by alternating MAP inference (H-step) and a dictionary step (W-step).

    A scikit-learn transformer: ``transform`` returns the MAP codes of new rows,
    ``fit_transform(X)`` is ``fit(X).transform(X)`` and ``get_feature_names_out``
    names the codes ``sparsecoding0 ... sparsecoding{K-1}``.

    Parameters
    ----------
    n_components : int
        Number of atoms K.
    alpha : float
        Sparsity weight (lambda / beta of Eqs. 19.14-19.15).
    solver : {"fista", "ista"}
        H-step solver.
    fit_intercept : bool
        Learn the offset b of Eq. 19.15 (otherwise b = 0).
    tol : float
        Stop when the relative change of J between sweeps is at most ``tol``.
    max_iter : int
        Maximum number of H/W sweeps.
    h_max_iter, h_tol : int, float
        Iteration cap and tolerance of each H-step (warm-started).
    w_max_sweeps : int
        Block-coordinate sweeps over the atoms in each W-step.
    dict_init : array (n_components, n_features) or None
        Initial dictionary (rows normalised); default: K random centred data rows.
    random_state : int, RandomState or None

    Attributes
    ----------
    components_
        (n_components, n_features) unit-norm atoms (rows).
    intercept_
        (n_features,) offset b.
    codes_
        (n_samples, n_components) MAP codes of the training data.
    objective_
        J(H, W) / n_samples at the end (Eq. 19.16).
    lower_bound_
        -objective_ (the tracked quantity: log p(H, V) per sample up to a constant,
        Eq. 19.12 with beta = 1, lambda = alpha).
    """

    _tol_mode = "relative"
    _monitor = "W"

    def __init__(self, n_components: int = 8, *, alpha: float = 1.0, solver: str = "fista",
                 fit_intercept: bool = True, tol: float = 1e-6, max_iter: int = 100, h_max_iter: int = 200,
                 h_tol: float = 1e-6, w_max_sweeps: int = 50, dict_init=None, random_state=None,
                 verbose: int = 0):
        super().__init__(tol=tol, max_iter=max_iter, random_state=random_state, verbose=verbose)
        self.n_components = n_components
        self.alpha = alpha
        self.solver = solver
        self.fit_intercept = fit_intercept
        self.h_max_iter = h_max_iter
        self.h_tol = h_tol
        self.w_max_sweeps = w_max_sweeps
        self.dict_init = dict_init

    def _check_params(self, X):
        _check_int(self.n_components, "n_components", 1)
        _check_real(self.alpha, "alpha", 0.0)
        if self.solver not in ("fista", "ista"):
            raise ConfigError(f"solver must be 'fista' or 'ista'; got {self.solver!r}.")
        _check_int(self.h_max_iter, "h_max_iter", 1)
        _check_real(self.h_tol, "h_tol", 0.0)
        _check_int(self.w_max_sweeps, "w_max_sweeps", 1)
        if self.dict_init is not None:
            D = check_data(self.dict_init, name="dict_init")
            if D.shape != (self.n_components, X.shape[1]):
                raise DataError(f"dict_init must have shape {(self.n_components, X.shape[1])}; got {D.shape}.")

    def _initialize(self, X, random_state):
        self._rng = random_state
        n, d = X.shape
        self._b = X.mean(axis=0) if self.fit_intercept else np.zeros(d)
        if self.dict_init is not None:
            W = np.array(self.dict_init, dtype=np.float64)
        else:
            idx = random_state.choice(n, size=self.n_components, replace=n < self.n_components)
            W = X[idx] - self._b
        norms = np.linalg.norm(W, axis=1)
        zero = norms == 0
        if zero.any():
            W[zero] = random_state.standard_normal((int(zero.sum()), d))
            norms[zero] = np.linalg.norm(W[zero], axis=1)
        self._W = W / norms[:, None]
        self._H = np.zeros((n, self.n_components))

    def _blocks(self):
        return [("H", self._h_step), ("W", self._w_step)]

    def _h_step(self, X):
        """H = argmin_H J(H, W): the MAP codes (Eqs. 19.12-19.13) by FISTA or ISTA, warm-started."""
        Xc = X - self._b
        accelerate = self.solver == "fista"
        H, _ = _proximal_gradient(Xc, self._W, float(self.alpha), self._H, self.h_max_iter, self.h_tol,
                                  accelerate=accelerate, restart=accelerate)
        # FISTA is not monotone iterate by iterate: keep a row's warm start if it was better
        old = sparse_coding_objective(Xc, self._H, self._W, self.alpha, per_row=True)
        new = sparse_coding_objective(Xc, H, self._W, self.alpha, per_row=True)
        worse = new > old
        if worse.any():
            H[worse] = self._H[worse]
        self._H = H

    def _w_step(self, X):
        """(W, b) = argmin J(H, W, b) s.t. ||w_k|| <= 1 (the least-squares step of Eq. 19.16)."""
        H = self._H
        if self.fit_intercept:  # b = mean(V - H W^T) eliminates b: centre V and H
            h_mean, x_mean = H.mean(axis=0), X.mean(axis=0)
            Hc, Xc = H - h_mean, X - x_mean
        else:
            Hc, Xc = H, X
        self._W = dictionary_step(Hc.T @ Hc, Hc.T @ Xc, self._W, max_sweeps=self.w_max_sweeps,
                                  rng=self._rng, refill=Xc)
        if self.fit_intercept:
            self._b = x_mean - h_mean @ self._W

    def _bound_terms(self, X):
        R = X - self._b - self._H @ self._W
        return {
            # Eq. 19.15: beta/2 ||v - W h - b||^2 with beta = 1 (Gaussian log-likelihood, negated)
            "-1/2 ||V - H W^T - b||^2": -0.5 * float(np.einsum("nd,nd->", R, R)),
            # Eq. 19.14: lambda |h_i| with lambda = alpha (Laplace log-prior, negated)
            "-alpha ||H||_1": -self.alpha * float(np.abs(self._H).sum()),
        }

    def _finalize(self, X):
        self.components_ = self._W
        self.intercept_ = self._b
        self.codes_ = self._H
        self.objective_ = -self.lower_bound_

    @property
    def _n_features_out(self) -> int:
        """Width of ``transform``'s output (for ``get_feature_names_out``)."""
        return self.components_.shape[0]

    def transform(self, X, *, max_iter: int = 1000, tol: float = 1e-8) -> np.ndarray:
        """MAP codes of new rows with the learned dictionary (the H-step run to convergence)."""
        X = self._validate(X)
        solver = fista if self.solver == "fista" else ista
        return solver(X - self.intercept_, self.components_, self.alpha, max_iter=max_iter, tol=tol)[0]

    def score(self, X, y=None) -> float:
        """-J / n at the MAP codes of X: mean log p(h*, v) up to a constant."""
        X = self._validate(X)
        H = self.transform(X)
        return -sparse_coding_objective(X, H, self.components_, self.alpha, self.intercept_) / X.shape[0]
