"""scikit-learn estimator checks for the classical estimators: a pass/fail table per estimator.

Runs ``sklearn.utils.estimator_checks.check_estimator`` (scikit-learn 1.9, ``on_fail=None`` and a
callback that records every check's status) on the small instances of
``varinf.classical._sklearn_checks.check_instances`` and prints, per estimator, how many checks
passed, failed, were expected to fail (xfail, with the intrinsic reasons given to scikit-learn) or
were skipped (pandas / array-API checks when those are not installed or enabled).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/sklearn_checks.py [--no-xfail] [--details]

``--no-xfail`` runs without the expected-failure list (xfails then count as failures);
``--details`` prints each failing or xfailing check with the first line of its error.
The "before" column of docs/RESULTS.md was taken with this script on the code of commit 232b916
(see RESULTS for the exact command).
"""

from __future__ import annotations

import argparse
import time

from varinf.classical._sklearn_checks import check_instances, run_checks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-xfail", action="store_true", help="ignore the expected-failure list")
    parser.add_argument("--details", action="store_true", help="print each failing/xfailing check")
    args = parser.parse_args(argv)
    header = f"{'estimator':<26}{'passed':>7}{'failed':>7}{'xfail':>7}{'skipped':>8}{'total':>7}{'sec':>7}  note"
    print(header)
    print("-" * len(header))
    n_failed = 0
    for est in check_instances():
        t0 = time.perf_counter()
        counts, records, aborted = run_checks(est, use_expected_failures=not args.no_xfail)
        total = sum(counts.values())
        n_failed += counts["failed"] + (aborted is not None)
        note = f"ABORTED after {total} checks: {aborted[:90]}" if aborted else ""
        print(f"{type(est).__name__:<26}{counts['passed']:>7}{counts['failed']:>7}{counts['xfail']:>7}"
              f"{counts['skipped']:>8}{total:>7}{time.perf_counter() - t0:>7.1f}  {note}")
        if args.details:
            for r in records:
                if r["status"] in ("failed", "xfail"):
                    first = str(r["exception"]).splitlines()[0] if r["exception"] is not None else ""
                    print(f"    {r['status']:<7}{r['check_name']}: {type(r['exception']).__name__}: {first[:110]}")
    return 1 if n_failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
