"""The mutation campaign of issue #20 (docs/RESULTS.md §17, "Test quality"): which mutants, and the score table.

    pip install -e '.[test,mutation]'                               # mutmut 3 (3.8.1 measured)
    export OMP_NUM_THREADS=1 VARINF_DATA_DIR=/path/to/data
    mutmut run --max-children 1 $(python benchmarks/mutation_score.py names --group full --todo)   # also control,
    python benchmarks/mutation_score.py table                       # models, maths; then the per-module table
    python benchmarks/mutation_score.py verify                      # the new tests against the mutants they kill

mutmut 3 (``[tool.mutmut]`` in pyproject.toml: the modules mutated and the test selection) writes every
mutant of the modules into ``mutants/`` and runs, per mutant, the selected tests that reach its function;
this script says which mutants the campaign runs and turns mutmut's stored results
(``mutants/**/*.py.meta``) into the per-module table of RESULTS §17. ``--todo``: mutmut reruns every
mutant named on its command line, so name only those without a result.

Which mutants: every mutant of the functions in ``FULL``, and a fixed random sample of ``SAMPLES[group]``
of the functions in ``SAMPLED[group]`` (``random.Random(SEED)`` over the sorted names, so the same source
gives the same sample). ``EQUIVALENT`` lists the surviving mutants that are equivalent to the original or
accepted, each with its reason; ``KILLED_BY`` the survivors of the old suite that a test of
``tests/mutation/`` kills (``verify`` checks that each of those tests fails on its mutant and passes
unmutated). Score = killed / (run − equivalent/accepted), a timeout counting as killed; "before" is
mutmut's outcome (the suite without ``tests/mutation/``), "after" adds the kills of ``KILLED_BY``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEED = 20
# Every mutant of these functions runs (mutmut's names: f for a function, Class.method for a method; "*" = the
# whole module): the likelihoods, the statistics of evaluate, early stopping and the resume check of training,
# the optimizer state and random stream a checkpoint carries.
FULL = {
    "varinf.likelihoods": "*",
    "varinf.evaluate": ["_mean_and_stderr", "batch_generator", "_chunk"],
    "varinf.training": ["still_rising", "stops_early", "restore_training_state"],
    "varinf.checkpoint": ["_optimizer_split", "_optimizer_join", "encode_rng_state", "decode_rng_state",
                          "_weights_name"],
}
# Of these functions, a fixed random sample of SAMPLES[group] mutants (random.Random(SEED) over the sorted names).
SAMPLED = {
    "control": {   # the training loop (best/last, early stopping, resume) and the checkpoint's commit and read
        "varinf.training": ["_train_loop", "_start_state"],
        "varinf.checkpoint": ["save_checkpoint", "read_checkpoint", "_check_training_state", "_load_record",
                              "_committed_weights", "remove_stale_files", "restore"],
    },
    "models": {"varinf.models.linear_gaussian": "*", "varinf.models.sbn": "*", "varinf.models.vae": "*"},
    "maths": {"varinf.objectives": "*", "varinf.families": "*", "varinf.refinement": "*", "varinf.infer": "*"},
    # a second sample of the two modules the maths sample reached least (5 and 15 mutants), drawn the same way;
    # run with tests/mutation/ present, so it has an "after" score only (RESULTS §17)
    "maths-2": {"varinf.objectives": "*", "varinf.families": "*"},
}
SAMPLES = {"control": 100, "models": 100, "maths": 80, "maths-2": 40}

# mutant name -> "equivalent: why" or "accepted: why" (surviving mutants that no test can or should kill).
EQUIVALENT: dict[str, str] = {
    # checkpoint._optimizer_join: restore passes only the "optim.<idx>.<key>" tensors of one optimizer
    "varinf.checkpoint.x__optimizer_join__mutmut_6":
        "equivalent: `continue` → `break` on a name without the optim. prefix; restore passes none",
    "varinf.checkpoint.x__optimizer_join__mutmut_22":
        "equivalent: meta.get('scalars', {}) → get('scalars', None); every record save_checkpoint writes has 'scalars'",
    "varinf.checkpoint.x__optimizer_join__mutmut_24":
        "equivalent: meta.get('scalars', {}) → get('scalars'); the same",
    "varinf.likelihoods.x_needs_binary_data__mutmut_5":
        "equivalent: the likelihood built for data_dim 2 instead of 1 to read its binary_data flag",
    "varinf.checkpoint.x_encode_rng_state__mutmut_4": "equivalent: .decode('ascii') → .decode('ASCII') (codec names)",
    "varinf.checkpoint.x_read_checkpoint__mutmut_44":
        "accepted: message text (safetensors' error cut at 81 characters instead of 80)",
    # evaluate
    "varinf.evaluate.x__chunk__mutmut_1": "equivalent: default device 'cpu' → 'XXcpuXX'; every caller passes the device",
    "varinf.evaluate.x__chunk__mutmut_2": "equivalent: default device 'cpu' → 'CPU'; every caller passes the device",
    "varinf.evaluate.x_batch_generator__mutmut_9":
        "equivalent: SeedSequence.generate_state(2)[0] = generate_state(1)[0] (the words are drawn in order)",
    "varinf.evaluate.x_batch_generator__mutmut_13":
        "accepted: torch.Generator(device=device) → device=None differs only on a GPU; the suite runs on a CPU",
    # models
    "varinf.models.vae.xǁVAEǁprior__mutmut_7":
        "equivalent: argument validation switched on for the prior's Independent; the values are the same",
    "varinf.models.vae.x__in_place__mutmut_1":
        "equivalent: the activation not in place; in-place is a memory saving, values and gradients are the same",
    # families, infer (main after #19)
    "varinf.families.xǁDiagonalGaussianǁdist__mutmut_3":
        "equivalent: argument validation switched on for q's Independent; the values are the same",
    "varinf.families.xǁFactorialBernoulliǁdist__mutmut_13":
        "equivalent: argument validation switched on for q's Independent; the values are the same",
    "varinf.infer.arm.xǁAntitheticǁlosses__mutmut_84":
        "equivalent: the surrogate averaged over (S, B) at once instead of S then B; the loss is its mean anyway",
    "varinf.infer.nvil.xǁNVILǁ__init____mutmut_8":
        "accepted: the baseline's initial weights from seed + 7920 instead of + 7919; an equally valid fixed init",
    # the maths-2 sample
    "varinf.families.xǁDiagonalGaussianǁkl__mutmut_24":
        "equivalent: .sum(-1) → .sum(+1) over a family's (B, K) parameters (dimension 1 is the last one)",
    "varinf.objectives.x__in_support__mutmut_33": "accepted: message text (the hint upper-cased)",
}


# The surviving mutants of the suite as it was (c912661) that a test of tests/mutation/ kills: mutant -> test file.
# ``verify`` runs each file against each of its mutants (and once against the unmutated source, which must pass).
K = "tests/mutation/test_kills_"
KILLED_BY: dict[str, str] = {
    **{f"varinf.checkpoint.x__optimizer_join__mutmut_{i}": K + "checkpoint.py"
       for i in (11, 12, 14, 21, 25, 26, 27, 28, 29, 30, 31, 32)},
    **{f"varinf.likelihoods.xǁGaussianLikelihoodǁ__init____mutmut_{i}": K + "likelihoods.py" for i in (2, 4)},
    **{f"varinf.evaluate.x__mean_and_stderr__mutmut_{i}": K + "evaluate.py" for i in (5, 10, 11)},
    **{f"varinf.evaluate.x_batch_generator__mutmut_{i}": K + "evaluate.py" for i in (7, 11)},
    **{f"varinf.evaluate.x__chunk__mutmut_{i}": K + "evaluate.py" for i in (5, 7, 15, 25)},
    **{f"varinf.training.x_restore_training_state__mutmut_{i}": K + "training.py" for i in (4, 6)},
    **{f"varinf.training.x_still_rising__mutmut_{i}": K + "training.py" for i in (3, 4, 33, 34, 35, 48, 49, 50)},
    **{f"varinf.training.x__train_loop__mutmut_{i}": K + "training.py"
       for i in (30, 49, 65, 75, 85, 105, 106, 198, 202, 204, 206, 213, 216, 222, 224, 229)},
    **{f"varinf.models.vae.x__downsamplings__mutmut_{i}": K + "models.py" for i in (11, 12)},
    "varinf.models.vae.xǁConvDecoderǁ__init____mutmut_62": K + "models.py",
    **{f"varinf.models.vae.xǁConvEncoderǁforward__mutmut_{i}": K + "models.py" for i in (3, 21)},
    **{f"varinf.models.vae.xǁVAEConfigǁ__post_init____mutmut_{i}": K + "models.py" for i in (20, 32)},
    **{f"varinf.models.linear_gaussian.xǁLinearGaussianǁrandom__mutmut_{i}": K + "models.py" for i in (10, 14, 21, 26)},
    "varinf.models.linear_gaussian.xǁLinearGaussianǁ__init____mutmut_4": K + "models.py",
    # the maths, on main after #19 (tree mutants/)
    "varinf.families.xǁLayeredBernoulliDistributionǁ__init____mutmut_10": K + "families.py",
    "varinf.families.xǁLayeredBernoulliǁentropy_term__mutmut_2": K + "families.py",
    "varinf.infer.wake_sleep.x_sleep_objective__mutmut_5": K + "families.py",
    "varinf.infer.wake_sleep.x_wake_objective__mutmut_26": K + "families.py",
    "varinf.infer.nvil.xǁNVILStateǁ__init____mutmut_1": K + "families.py",
    "varinf.refinement.xǁRefinerǁ__init____mutmut_2": K + "families.py",
    "varinf.families.xǁPosteriorǁof__mutmut_17": K + "families.py",
    # the maths-2 sample (main after #19, tree mutants/)
    **{f"varinf.families.xǁPosteriorǁof__mutmut_{i}": K + "families.py" for i in (1, 6)},
    **{f"varinf.families.xǁFactorialBernoulliǁuniforms__mutmut_{i}": K + "families.py" for i in (4, 6)},
    # the rest of the control and models samples, run on main after #19 (tree mutants/)
    "varinf.checkpoint.x_remove_stale_files__mutmut_27": K + "checkpoint.py",
    **{f"varinf.checkpoint.x_read_checkpoint__mutmut_{i}": K + "checkpoint.py" for i in (32, 38)},
    **{f"varinf.checkpoint.x__weights_name__mutmut_{i}": K + "checkpoint.py" for i in range(1, 27)},
    **{f"varinf.checkpoint.x_restore__mutmut_{i}": K + "checkpoint.py" for i in (9, 12, 19, 36)},
    **{f"varinf.checkpoint.x__optimizer_split__mutmut_{i}": K + "checkpoint.py" for i in range(7, 19)},
    "varinf.training.x__start_state__mutmut_27": K + "training.py",
    **{f"varinf.checkpoint.x__check_training_state__mutmut_{i}": K + "training.py" for i in (52, 69, 79, 123)},
}

# Mutants of code that runs when a module is imported (the method registry): mutmut's forked runs import the
# package before the mutant is switched on, so they "survive" there; in a fresh process (verify) the old suite's
# test named here kills them. Counted killed, before and after.
IMPORT_TIME: dict[str, str] = {
    "varinf.infer.x__refined__mutmut_7": "tests/test_gbvi.py",
    "varinf.infer.x__refined__mutmut_12": "tests/test_gbvi.py",
}


def verify(mutants: list[str], root: Path) -> int:
    """Run each mutant's KILLED_BY test file against it (mutmut's trampolines pick the mutant from
    MUTANT_UNDER_TEST; mutants/src first on the path): it must fail; unmutated, every file must pass."""
    import os
    import subprocess
    bad = 0
    env = {**os.environ, "PYTHONPATH": "src", "OMP_NUM_THREADS": "1"}
    for name in ["", *mutants]:
        files = sorted(set(KILLED_BY.values())) if not name else [{**KILLED_BY, **IMPORT_TIME}[name]]
        rc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                             *[str(REPO / f) for f in files]], cwd=root,
                            env={**env, "MUTANT_UNDER_TEST": name}, capture_output=True).returncode
        ok = rc == 0 if not name else rc == 1
        bad += not ok
        print(f"{'ok ' if ok else 'BAD'} rc={rc} {name or '(unmutated)'} {' '.join(files)}")
    return 1 if bad else 0


def _status(code) -> str:
    from mutmut.stats import status_by_exit_code
    return status_by_exit_code[code]


def generated_counts(dirs: list[Path]) -> Counter:
    """Mutants generated per table row, counted in the tree that ran most of that row's mutants."""
    per_dir = [load_results([d]) for d in dirs]
    best: dict[str, tuple[int, int]] = {}
    for i, res in enumerate(per_dir):
        for m, n in Counter(module_of(k) for k, v in res.items() if v != "not checked").items():
            if n >= best.get(m, (0, 0))[0]:
                best[m] = (n, i)
    return Counter({m: sum(module_of(k) == m for k in per_dir[i]) for m, (_, i) in best.items()})


def load_results(dirs: list[Path]) -> dict[str, str]:
    """mutant name -> status, from mutmut's stored results in ``dirs`` (a later directory's result wins
    where it has one: a campaign run in two trees, e.g. before and after a refactor of some modules)."""
    out: dict[str, str] = {}
    for root in dirs:
        for meta in sorted((root / "src").rglob("*.py.meta")):
            for key, code in json.loads(meta.read_text())["exit_code_by_key"].items():
                if _status(code) != "not checked" or key not in out:
                    out[key] = _status(code)
    return out


def module_of(name: str) -> str:
    """The table's row: the module, with the files of a package (infer/, models/) on one row."""
    module = split(name)[0]
    for package in ("varinf.infer", "varinf.models"):
        if module == package or module.startswith(package + "."):
            return package + "/*"
    return module


def split(name: str) -> tuple[str, str]:
    """('varinf.training', '_train_loop') of 'varinf.training.x__train_loop__mutmut_12'."""
    mangled = name.rsplit("__mutmut_", 1)[0]
    module, _, func = mangled.rpartition(".")
    func = func[1:]                                   # mutmut's "x" prefix
    if func.startswith("ǁ"):
        func = ".".join(func.strip("ǁ").split("ǁ"))   # xǁClassǁmethod -> Class.method
    else:
        func = func[1:]                               # x_name -> name
    return module, func


def _matches(name: str, spec: dict) -> bool:
    module, func = split(name)
    for mod, funcs in spec.items():
        if module == mod or (funcs == "*" and module.startswith(mod + ".")):
            if funcs == "*" or func in funcs:
                return True
    return False


def names(group: str, results: dict[str, str]) -> list[str]:
    """The campaign's mutants of ``group``: "full" (FULL, every mutant) or a sampled group of SAMPLED."""
    if group == "full":
        return sorted(n for n in results if _matches(n, FULL))
    pool = sorted(n for n in results if _matches(n, SAMPLED[group]) and not _matches(n, FULL))
    return sorted(random.Random(SEED).sample(pool, min(SAMPLES[group], len(pool))))


def table(results: dict[str, str], chosen: set[str], before: dict[str, str] | None, generated: Counter,
          after_kills: bool = True) -> str:
    """Per module: the mutants run, their outcome with the new tests (mutmut's, or killed where KILLED_BY
    names a test that kills it), and the score before (mutmut's stored outcome, or ``before``) and after."""
    rows = defaultdict(Counter)
    for n in chosen:
        st = "killed" if (n in KILLED_BY and after_kills) or n in IMPORT_TIME else results[n]
        m = module_of(n)
        rows[m]["run"] += st != "not checked"
        if n in EQUIVALENT and st == "survived":
            rows[m]["equivalent/accepted"] += 1
        else:
            rows[m][st] += 1
        b = before.get(n, "not checked") if before is not None else results[n]
        b = "killed" if n in IMPORT_TIME else b
        if b != "not checked":
            rows[m]["b_run"] += 1
            rows[m]["b_eq"] += n in EQUIVALENT and b == "survived"
            rows[m]["b_killed"] += b in ("killed", "timeout")

    def score(k, run, eq):
        return f"{100 * k / (run - eq):.1f} %" if run - eq > 0 else "—"

    lines = ["| module | generated | run | killed | survived | timeout | equivalent/accepted | other | "
             "score before | score after |", "|---|---|---|---|---|---|---|---|---|---|"]
    total = Counter()
    for m in sorted(rows):
        r = rows[m]
        total.update(r)
        total["generated"] += generated[m]
        killed = r["killed"] + r["timeout"]
        other = r["run"] - r["killed"] - r["timeout"] - r["survived"] - r["equivalent/accepted"]
        lines.append(f"| {m} | {generated[m]} | {r['run']} | {r['killed']} | {r['survived']} | {r['timeout']} | "
                     f"{r['equivalent/accepted']} | {other} | {score(r['b_killed'], r['b_run'], r['b_eq'])} | "
                     f"{score(killed, r['run'], r['equivalent/accepted'])} |")
    killed = total["killed"] + total["timeout"]
    other = total["run"] - killed - total["survived"] - total["equivalent/accepted"]
    lines.append(f"| **all** | {total['generated']} | {total['run']} | {total['killed']} | {total['survived']} | "
                 f"{total['timeout']} | {total['equivalent/accepted']} | {other} | "
                 f"{score(total['b_killed'], total['b_run'], total['b_eq'])} | "
                 f"{score(killed, total['run'], total['equivalent/accepted'])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    n = sub.add_parser("names", help="the mutant names of a group, one a line (for mutmut run)")
    n.add_argument("--group", required=True, choices=["full", *SAMPLED])
    n.add_argument("--todo", action="store_true", help="only those without a result yet (mutmut reruns every "
                   "mutant named on its command line)")
    t = sub.add_parser("table", help="the per-module score table (markdown) of the mutants run")
    t.add_argument("--before", type=Path, help="a results snapshot (--save) of the suite before the new tests")
    t.add_argument("--save", type=Path, help="write the results (name -> status) of the mutants run to this file")
    t.add_argument("--survivors", action="store_true", help="list the surviving mutants not in EQUIVALENT")
    v = sub.add_parser("verify", help="run each KILLED_BY test file against its mutants (they must fail)")
    v.add_argument("mutants", nargs="*", help="default: every mutant of KILLED_BY")
    ap.add_argument("--dir", type=Path, action="append",
                    help="mutmut's directory (default: mutants/); give several to merge their results")
    args = ap.parse_args(argv)
    results = load_results(args.dir or [REPO / "mutants"])
    if not results:
        print("no mutmut results under mutants/: run mutmut first (see this script's docstring)", file=sys.stderr)
        return 1
    if args.cmd == "verify":
        return verify(args.mutants or sorted(k for k in {**KILLED_BY, **IMPORT_TIME} if results.get(k, "not checked")
                                             != "not checked"), (args.dir or [REPO / "mutants"])[-1])
    if args.cmd == "names":
        print("\n".join(n for n in names(args.group, results) if not args.todo or results[n] == "not checked"))
        return 0
    chosen = {k for k, v in results.items() if v != "not checked"}
    if args.save:
        args.save.write_text(json.dumps({k: results[k] for k in sorted(chosen)}, indent=0) + "\n")
    before = json.loads(args.before.read_text()) if args.before else None
    print(table(results, chosen, before, generated_counts(args.dir or [REPO / "mutants"])))
    if args.survivors:
        for k in sorted(chosen):
            if results[k] not in ("killed", "timeout") and k not in EQUIVALENT and k not in KILLED_BY \
                    and k not in IMPORT_TIME:
                print(results[k], k)
    return 0


if __name__ == "__main__":
    sys.exit(main())
