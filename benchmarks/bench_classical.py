"""Speed of varinf.classical EM and Bayesian-mixture CAVI against scikit-learn.

Synthetic data: ``--n`` x ``--d`` points from ``--k`` Gaussian components whose
means are drawn with scale ``--sep`` (0.5: strongly overlapping, so both EM and
CAVI need tens of iterations) and random full covariances.

Both libraries start from the same point - one k-means run (``random_state=--seed``)
outside the timed region, turned into initial weights/means/precisions for
``GaussianMixture`` (scikit-learn's ``*_init`` arguments) and into initial
responsibilities for ``BayesianGaussianMixture`` (varinf's ``resp_init``; for
scikit-learn a subclass that feeds the same responsibilities to its
``_initialize``) - and use the same ``tol``, ``max_iter`` and ``reg_covar``.
scikit-learn's tolerance semantics are kept: ``tol`` on the per-sample
log-likelihood for GaussianMixture, on the total bound for the Bayesian mixture
(where ``--tol * --n`` is passed, the same per-sample change).

For each repeat the two implementations run alternately (the order flips every
repeat) under the same BLAS thread limit (threadpoolctl). Printed: a markdown
table of median seconds, iterations, final bound, and the ratio
sklearn seconds / varinf seconds, plus the hardware, date and command.

    python benchmarks/bench_classical.py --n 100000 --d 10 --k 10 --repeats 3

``--agreement`` instead prints the agreement with scikit-learn on the problems of
tests/test_classical_*.py (max relative differences of bounds, parameters,
responsibilities and lasso objectives).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import shlex
import statistics
import sys
import time
import warnings

import numpy as np
import sklearn
from sklearn import mixture as skm
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from varinf.classical import BayesianGaussianMixture, GaussianMixture
from varinf.classical.datasets import make_gaussian_mixture


class _SklearnBGMMFromResp(skm.BayesianGaussianMixture):
    """scikit-learn's Bayesian mixture started from given responsibilities ``resp0_``."""

    def _initialize_parameters(self, X, random_state, xp=None):
        self._initialize(X, self.resp0_)


def _initial_gmm_parameters(X, resp, reg_covar):
    nk = resp.sum(axis=0) + 10 * np.finfo(float).eps
    means = resp.T @ X / nk[:, None]
    covs = np.empty((resp.shape[1], X.shape[1], X.shape[1]))
    for j in range(resp.shape[1]):
        diff = X - means[j]
        covs[j] = (resp[:, j] * diff.T) @ diff / nk[j] + reg_covar * np.eye(X.shape[1])
    return nk / nk.sum(), means, np.linalg.inv(covs)


def _timed_fit(est, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        est.fit(X)
        return time.perf_counter() - t0


# --------------------------------------------------------------------------- agreement report
def _rel(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


def _soft_init(X, k, covariance_type, seed):
    rng = np.random.default_rng(seed)
    resp = rng.dirichlet(np.ones(k), size=X.shape[0])
    nk = resp.sum(0)
    means = resp.T @ X / nk[:, None]
    if covariance_type == "full":
        covs = np.stack([(resp[:, j, None] * (X - means[j])).T @ (X - means[j]) / nk[j] for j in range(k)])
        return nk / nk.sum(), means, np.linalg.inv(covs)
    var = np.stack([(resp[:, j, None] * (X - means[j]) ** 2).sum(0) / nk[j] for j in range(k)])
    return nk / nk.sum(), means, 1.0 / var


def agreement_report() -> str:
    """Max relative differences to scikit-learn on the test problems (and one large EM/CAVI problem)."""
    import math

    from scipy.special import gammaln
    from sklearn.datasets import load_digits
    from sklearn.decomposition import SparseCoder

    from varinf.classical import fista, ista, sparse_coding_objective

    rows = ["| comparison | setting | iterations varinf / sklearn | bound: rel. diff. | parameters: max rel. diff. "
            "| responsibilities: max abs. diff. |", "|---|---|---|---|---|---|"]
    X = make_gaussian_mixture(sep=0.9, seed=1)[0]   # the data of the EM/CAVI agreement tests
    for ct in ("full", "diag"):
        w, m, p = _soft_init(X, 3, ct, seed=1)
        kw = dict(covariance_type=ct, tol=1e-6, max_iter=500, weights_init=w, means_init=m, precisions_init=p)
        a, b = GaussianMixture(3, **kw).fit(X), skm.GaussianMixture(3, **kw).fit(X)
        par = max(_rel(getattr(a, n), getattr(b, n)) for n in ("weights_", "means_", "covariances_", "precisions_"))
        rows.append(f"| EM vs GaussianMixture | {ct}, n=600, d=3, K=3, same initial parameters | {a.n_iter_} / "
                    f"{b.n_iter_} | {abs(a.lower_bound_ - b.lower_bound_) / abs(b.lower_bound_):.1e} | {par:.1e} | "
                    f"{np.abs(a.predict_proba(X) - b.predict_proba(X)).max():.1e} |")
    for reg in (0.0, 1e-6):
        kw = dict(n_components=4, reg_covar=reg, tol=1e-6, max_iter=1000, random_state=3, init_params="kmeans")
        a = BayesianGaussianMixture(**kw).fit(X)
        b = skm.BayesianGaussianMixture(weight_concentration_prior_type="dirichlet_distribution", **kw).fit(X)
        par = max(_rel(getattr(a, n), getattr(b, n)) for n in
                  ("weights_", "means_", "covariances_", "precisions_", "degrees_of_freedom_", "mean_precision_"))
        note = ""
        if reg == 0.0:
            n, d, k = X.shape[0], X.shape[1], 4
            ld0 = -np.linalg.slogdet(np.cov(X.T))[1]
            log_b0 = (-0.5 * d * ld0 - 0.5 * d * d * math.log(2) - 0.25 * d * (d - 1) * math.log(math.pi)
                      - sum(gammaln(0.5 * (d + 1 - i)) for i in range(1, d + 1)))
            const = (gammaln(k * 0.25) - k * gammaln(0.25) + k * log_b0 - 0.5 * n * d * math.log(2 * math.pi)
                     + 0.25 * k * d * (d - 1) * math.log(math.pi))
            resid = abs(a.lower_bound_ - b.lower_bound_ - const) / abs(a.lower_bound_)
            note = f"; full ELBO vs sklearn + constant: {resid:.1e}"
        bound = abs(a.sklearn_lower_bound_ - b.lower_bound_) / abs(b.lower_bound_)
        rows.append(f"| CAVI vs BayesianGaussianMixture | reg_covar={reg:g}, n=600, d=3, K=4, same k-means init | "
                    f"{a.n_iter_} / {b.n_iter_} | {bound:.1e}{note} | {par:.1e} | "
                    f"{np.abs(a.predict_proba(X) - b.predict_proba(X)).max():.1e} |")

    Xd = load_digits().data
    Xd = (Xd - Xd.mean(0))[:400]
    rows += ["", "| sparse codes vs SparseCoder(lasso_cd) | atoms, alpha | iterations | "
             "(J_varinf - J_sklearn) / J_sklearn |", "|---|---|---|---|"]
    for n_atoms, alpha in ((32, 1.0), (96, 0.5), (96, 4.0)):
        D = np.random.default_rng(n_atoms).normal(size=(n_atoms, 64))
        D /= np.linalg.norm(D, axis=1, keepdims=True)
        ref = SparseCoder(D, transform_algorithm="lasso_cd", transform_alpha=alpha,
                          transform_max_iter=20000).transform(Xd)
        j_ref = sparse_coding_objective(Xd, ref, D, alpha)
        for solver in (fista, ista):
            H, it = solver(Xd, D, alpha, max_iter=20000, tol=1e-5)
            rows.append(f"| {solver.__name__} (tol=1e-5), 400 digits | {n_atoms}, {alpha:g} | {it} | "
                        f"{(sparse_coding_objective(Xd, H, D, alpha) - j_ref) / j_ref:+.1e} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=10)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--sep", type=float, default=0.5, help="scale of the component means (overlap)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tol", type=float, default=1e-3, help="per-sample tolerance")
    parser.add_argument("--max-iter", type=int, default=500)
    parser.add_argument("--reg-covar", type=float, default=1e-6)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads for both libraries")
    parser.add_argument("--out", default=None, help="also write the markdown report to this file")
    parser.add_argument("--agreement", action="store_true",
                        help="print only the agreement with scikit-learn on the test problems (fast)")
    args = parser.parse_args(argv)
    command = ("python " + " ".join(shlex.quote(a) for a in
                                     [sys.argv[0], *(argv if argv is not None else sys.argv[1:])]))
    if args.agreement:
        with threadpool_limits(limits=args.threads):
            report = f"Command: `{command}`\n\n" + agreement_report()
        print(report)
        if args.out:
            with open(args.out, "w") as fh:
                fh.write(report + "\n")
        return 0

    X, _ = make_gaussian_mixture(args.n, args.d, args.k, args.sep, args.seed, weight_concentration=5.0)
    with threadpool_limits(limits=args.threads):
        labels = KMeans(n_clusters=args.k, n_init=1, random_state=args.seed).fit(X).labels_
    resp0 = np.zeros((args.n, args.k))
    resp0[np.arange(args.n), labels] = 1.0
    w0, m0, p0 = _initial_gmm_parameters(X, resp0, args.reg_covar)

    def ours_gmm():
        return GaussianMixture(args.k, covariance_type="full", tol=args.tol, max_iter=args.max_iter,
                               reg_covar=args.reg_covar, weights_init=w0, means_init=m0, precisions_init=p0)

    def sk_gmm():
        return skm.GaussianMixture(args.k, covariance_type="full", tol=args.tol, max_iter=args.max_iter,
                                   reg_covar=args.reg_covar, weights_init=w0, means_init=m0, precisions_init=p0)

    def ours_bgmm():
        return BayesianGaussianMixture(args.k, tol=args.tol * args.n, max_iter=args.max_iter,
                                       reg_covar=args.reg_covar, resp_init=resp0)

    def sk_bgmm():
        est = _SklearnBGMMFromResp(n_components=args.k, covariance_type="full", tol=args.tol * args.n,
                                   max_iter=args.max_iter, reg_covar=args.reg_covar,
                                   weight_concentration_prior_type="dirichlet_distribution")
        est.resp0_ = resp0
        return est

    cases = {
        "GaussianMixture (EM, full)": (ours_gmm, sk_gmm, lambda e: e.lower_bound_, lambda e: e.lower_bound_),
        # compare scikit-learn's bound with the same quantity from varinf (sklearn_lower_bound_)
        "BayesianGaussianMixture (CAVI, full)": (ours_bgmm, sk_bgmm, lambda e: e.sklearn_lower_bound_,
                                                 lambda e: e.lower_bound_),
    }
    results = {name: {"varinf": [], "sklearn": []} for name in cases}
    with threadpool_limits(limits=args.threads):
        for rep in range(args.repeats):
            for name, (make_ours, make_sk, bound_ours, bound_sk) in cases.items():
                order = [("varinf", make_ours, bound_ours), ("sklearn", make_sk, bound_sk)]
                if rep % 2:
                    order.reverse()
                for impl, make, bound in order:
                    est = make()
                    seconds = _timed_fit(est, X)
                    results[name][impl].append((seconds, est.n_iter_, float(bound(est)), est))
                    print(f"# repeat {rep} {name} {impl}: {seconds:.3f} s, {est.n_iter_} iterations",
                          file=sys.stderr, flush=True)

    lines = [
        "| model | implementation | seconds (median) | seconds (all) | iterations | s / iteration | final bound "
        "| ratio sklearn/varinf (medians) | ratio (median of paired repeats) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, res in results.items():
        med = {impl: statistics.median(r[0] for r in runs) for impl, runs in res.items()}
        for impl in ("varinf", "sklearn"):
            runs = res[impl]
            secs = [r[0] for r in runs]
            iters = runs[0][1]
            ratio = paired = ""
            if impl == "varinf":
                ratio = f"{med['sklearn'] / med['varinf']:.2f}x"
                pairs = [b[0] / a[0] for a, b in zip(res["varinf"], res["sklearn"])]
                paired = f"{statistics.median(pairs):.2f}x"
            lines.append(f"| {name} | {impl} | {med[impl]:.3f} | {', '.join(f'{s:.3f}' for s in secs)} | "
                         f"{iters} | {med[impl] / iters:.4f} | {runs[0][2]:.10g} | {ratio} | {paired} |")
    agreement = []
    for name, res in results.items():
        ours, sk = res["varinf"][0], res["sklearn"][0]
        rel_bound = abs(ours[2] - sk[2]) / abs(sk[2])
        rel_means = np.abs(ours[3].means_ - sk[3].means_).max() / np.abs(sk[3].means_).max()
        agreement.append(f"- {name}: |bound difference| / |bound| = {rel_bound:.2e}, "
                         f"max |means difference| / max |means| = {rel_means:.2e}, "
                         f"iterations {ours[1]} (varinf) vs {sk[1]} (sklearn)")
    bgmm = results["BayesianGaussianMixture (CAVI, full)"]["varinf"][0][3]
    header = [
        f"Command: `{command}`",
        f"Date: {_dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"Hardware: {platform.platform()}, {platform.machine()}, processor '{platform.processor() or 'n/a'}', "
        f"os.cpu_count()={os.cpu_count()}; BLAS threads per fit: {args.threads}",
        f"Software: Python {platform.python_version()}, numpy {np.__version__}, scikit-learn {sklearn.__version__}",
        f"Data: n={args.n}, d={args.d}, k={args.k}, sep={args.sep}, seed={args.seed}; tol={args.tol} per sample "
        f"(Bayesian mixture: tol={args.tol * args.n:g} on the total bound), max_iter={args.max_iter}, "
        f"reg_covar={args.reg_covar}; repeats={args.repeats}, implementations alternated",
        "",
    ]
    footer = ["", "Agreement between the two fits (first repeat):", *agreement,
              f"- varinf full ELBO of the Bayesian mixture (all constants kept): {bgmm.lower_bound_:.10g}"]
    report = "\n".join(header + lines + footer)
    print(report)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
