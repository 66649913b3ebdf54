"""Run one row of Hjelm et al. (2015)'s Table 1 (continuous latents) or Table 2 (binary latents), or of Table 3
(binary-latent estimators and deep SBNs, issue #21): train, evaluate.

    python benchmarks/paper_table.py --table 1 --row gbvi-reduced      # -> runs/table1-gbvi-reduced/
    python benchmarks/paper_table.py --table 2 --row mpvi20-reduced --threads 1
    python benchmarks/paper_table.py --table 2 --row avi20-reduced --avi-rates 1 0.3 0.1 --threads 1

Table 1 rows (paper: RMSprop 3e-3, batch 100, early stopping, at most 500 epochs):
    vae, gbvi20                   configs/table1_{vae,gbvi20}.toml             paper settings
    vae-reduced, gbvi-reduced     configs/table1_{vae,gbvi}_reduced.toml       about an hour on 2 CPU cores
    hvi5[-reduced], hvi10[-reduced]  configs/table1_hvi{5,10}[_reduced].toml   Salimans et al. (2015)
    iwae-reduced                  configs/table1_iwae_reduced.toml             Burda et al. (2016), k = 5
Table 2 rows (paper: Adam 3e-4, batch 10, early stopping, at most 500 epochs; "-reduced": 25-60 min on one
core, see each file's header):
    wake-sleep[-reduced]          configs/table2_wake_sleep[_reduced].toml     784-200 linear
    nvil[-reduced]                configs/table2_nvil[_reduced].toml           784-200 linear + baseline net
    nvil-240[-reduced]            configs/table2_nvil_240[_reduced].toml       (240) softplus (not a paper row)
    avi20[-reduced]               configs/table2_avi20[_reduced].toml          784-200 linear
    avi20-240[-reduced]           configs/table2_avi20_240[_reduced].toml      (240) softplus
    mpvi20[-reduced]              configs/table2_mpvi20[_reduced].toml         784-200 linear
    mpvi20-240[-reduced]          configs/table2_mpvi20_240[_reduced].toml     (240) softplus

Table 3 rows (issue #21; static binarized MNIST, Adam 3e-4, batch 50, at most 20 epochs, patience 5; see
docs/RESULTS.md §16), one command per row, e.g.
    python benchmarks/paper_table.py --table 3 --row deep-disarm --threads 1
    linear-M, nonlinear-M, deep-M   configs/table3_{linear,nonlinear,deep}_M.toml   M = vimco, arm, disarm, gumbel,
                                    gumbel-st, nvil; 784-200 / 784-[200-200]-200 / 784-200-200-200
    deep-mpvi, deep-stvi, deep-avi  configs/table3_deep_{mpvi,stvi,avi}.toml        refined EM on every layer, T = 5

Evaluation. Table 1 and Table 3 rows: ``varinf eval`` (k = ``--nll-samples`` = 5000 importance samples per test point,
Burda et al. 2016), the encoder's q and q refined by the run's own T steps. The paper gives no NLL protocol
for either table. Table 2 rows follow issue #10's reading of the authors' public code (k = 50, r among
0 5 10 20), with a change of ours: the number of test-time refinement steps r ∈ ``--test-steps`` (default
0 5 10 20; r = 0 is the encoder alone) is chosen by the importance-sampled log-likelihood (k = 50) on the
*validation* split (that reading of the code chose it on test images), and the test split is then
evaluated at that r with k = 50 and k = 5000 (ours), beside the encoder alone (r = 0).
``--nll-samples``, ``--subset`` and ``--refine-steps`` are for Table 1 and 3 rows only. AVI's step γ can be chosen
first among ``--avi-rates`` by short runs (``--avi-rate-epochs`` epochs each, the encoder's final validation
bound; runs/<row>-gamma-<γ>). The row's summary is printed and written to RUN_DIR/table<N>_row.json;
``--resume`` continues an interrupted training run. ``python benchmarks/paper_table.py --summary`` prints
the measured Table 2 rows (runs/table2-*/table2_row.json) as the markdown table of docs/RESULTS.md §13.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

from varinf.checkpoint import atomic_write_json
from varinf.config import make_config
from varinf.data import load_dataset
from varinf.distributed import context
from varinf.evaluate import evaluate_model, evaluate_run, resumable, run_refiner
from varinf.infer import METHODS
from varinf.training import load_method, load_model, train

REPO = Path(__file__).resolve().parents[1]


TABLES = {
    "1": {
        "vae": "table1_vae.toml",
        "gbvi20": "table1_gbvi20.toml",
        "vae-reduced": "table1_vae_reduced.toml",
        "gbvi-reduced": "table1_gbvi_reduced.toml",
        "hvi5": "table1_hvi5.toml",
        "hvi10": "table1_hvi10.toml",
        "hvi5-reduced": "table1_hvi5_reduced.toml",
        "hvi10-reduced": "table1_hvi10_reduced.toml",
        "iwae-reduced": "table1_iwae_reduced.toml",
    },
    "2": {
        name + suffix: f"table2_{name.replace('-', '_')}{suffix.replace('-', '_')}.toml"
        for name in ("wake-sleep", "nvil", "nvil-240", "avi20", "avi20-240", "mpvi20", "mpvi20-240")
        for suffix in ("", "-reduced")
    },
    "3": {
        f"{net}-{method}": f"table3_{net}_{method.replace('-', '_')}.toml"
        for net in ("linear", "nonlinear", "deep")
        for method in ("vimco", "arm", "disarm", "gumbel", "gumbel-st", "nvil",
                       *(("mpvi", "stvi", "avi") if net == "deep" else ()))
    },
}


def _hardware() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
            f"torch {torch.__version__} threads={torch.get_num_threads()}")


def _summary(values: torch.Tensor) -> tuple[float, float]:
    return values.mean().item(), values.std().item() / math.sqrt(values.numel())


def choose_avi_rate(cfg, rates, epochs: int, out: Path) -> tuple[float, dict]:
    """Train ``epochs`` epochs per γ in ``rates``; the γ whose encoder reaches the best validation bound."""
    scores = {}
    for rate in rates:
        run = out.with_name(f"{out.name}-gamma-{rate:g}")
        trial = dataclasses.replace(cfg, avi_rate=rate, epochs=epochs, patience=0)
        result = train(trial, run, resume=(run / "checkpoints" / "last.json").exists(), progress=True)
        scores[rate] = result.history[-1]["valid_elbo"]
        print(f"AVI step γ = {rate:g}: encoder validation bound {scores[rate]:.3f} after {epochs} epochs", flush=True)
    return max(scores, key=scores.get), scores


def continue_trial(trial: Path, out: Path, cfg) -> None:
    """Start the row from the chosen γ's trial: its epochs are the row's first epochs (same seed and settings;
    only ``epochs``/``patience`` differ, which a resumed run may change), so they are not trained twice."""
    shutil.copytree(trial, out, ignore=shutil.ignore_patterns(".lock", "*.tmp"), dirs_exist_ok=True)
    config = json.loads((out / "config.json").read_text())
    atomic_write_json(out / "config.json", {**config, "train": cfg.resolved().to_dict(), "continued_from": str(trial)})


def table2_protocol(run: Path, test_steps, data_dir, seed: int = 0) -> dict:
    """r chosen on the validation split by the k = 50 log-likelihood; the test split at r with k = 50 and 5000.

    Resumable: the finished batches of each evaluation are kept in RUN/table2.partial/ until the row is written.
    """
    with resumable(run / "table2.partial", context()) as resume_dir:
        return _table2_protocol(run, test_steps, data_dir, seed, resume_dir)


def _table2_protocol(run: Path, test_steps, data_dir, seed: int, resume_dir: Path) -> dict:
    model, cfg, meta = load_model(run, "best")
    dataset = load_dataset(cfg.dataset, data_dir or cfg.data_dir)
    valid, test = dataset.split("valid"), dataset.split("test")
    has_refiner = METHODS[cfg.method].refiner is not None
    steps = sorted(set(test_steps)) if has_refiner else [0]

    def evaluate(x, r, k):
        refiner = run_refiner(cfg, model.family.name, refine_steps=r) if r else None
        out = evaluate_model(model, x, nll_samples=k, batch_size=500, seed=seed, refiner=refiner, progress=True,
                             resume_dir=resume_dir)
        return out["elbo"], out["log_px"]

    chosen = {}
    for r in steps:
        elbo, log_px = evaluate(valid, r, 50)
        chosen[r] = {"valid_bound": elbo.mean().item(), "valid_nll_k50": -log_px.mean().item()}
        print(f"r = {r:2d}: validation bound {chosen[r]['valid_bound']:.3f}, NLL (k = 50) "
              f"{chosen[r]['valid_nll_k50']:.3f}", flush=True)
    best = min(chosen, key=lambda r: chosen[r]["valid_nll_k50"])
    row = {"checkpoint_epoch": meta["epoch"] + 1, "test_steps_tried": steps, "validation": chosen, "test_steps": best,
           "refiner": run_refiner(cfg, model.family.name, refine_steps=max(best, 1)).settings()}
    for r in sorted({0, best}):
        for k in (50, 5000):
            elbo, log_px = evaluate(test, r, k)
            (b, b_se), (nll, nll_se) = _summary(elbo), _summary(-log_px)
            tag = "encoder" if r == 0 else "refined"
            row[f"test_bound_{tag}_k{k}"], row[f"test_bound_{tag}_k{k}_stderr"] = b, b_se
            row[f"test_nll_{tag}_k{k}"], row[f"test_nll_{tag}_k{k}_stderr"] = nll, nll_se
            print(f"test, r = {r}, k = {k}: bound {b:.3f} ± {b_se:.3f}, NLL {nll:.3f} ± {nll_se:.3f}", flush=True)
    row["test_points"] = int(test.shape[0])
    return row


def own_bound(run: Path, data_dir, seed: int = 0) -> dict:
    """The run's own training objective on the whole test split (HVI's auxiliary bound, IWAE's L_k, GBVI's
    refined bound, the VAE's ELBO), with the run's validation samples, ± standard error over images."""
    method, cfg, _ = load_method(run, "best")
    test = load_dataset(cfg.dataset, data_dir or cfg.data_dir).split("test")
    gen = torch.Generator().manual_seed(seed)
    values = torch.cat([method.validation_bound(xb, cfg.valid_samples, gen) for xb in test.split(500)])  # (N,)
    mean, se = _summary(values)
    print(f"test, own objective ({method.validation_description}): {mean:.3f} ± {se:.3f}", flush=True)
    return {"test_bound_own": mean, "test_bound_own_stderr": se, "own_bound": method.validation_description}


PAPER_TABLE2 = {"wake-sleep": (-120.7, 116.3), "nvil": (-113.1, None), "avi20": (-114.08, 110.13),
                "avi20-240": (-107.03, 103.10), "mpvi20": (None, None), "mpvi20-240": (-122.67, 103.32)}


def summary_table2(runs: Path) -> str:
    """The measured Table 2 rows (RUN_DIR/table2_row.json under ``runs``) as a markdown table."""
    def cell(row, key):
        v, se = row.get(key), row.get(key + "_stderr")
        return "" if v is None else f"{v:.2f} ± {se:.2f}"
    out = ["| row | epochs (best) | r (valid) | bound, encoder | bound, refined | NLL k=50 | NLL k=5000 | paper bound / NLL |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for path in sorted(runs.glob("table2-*/table2_row.json")):
        row = json.loads(path.read_text())
        if "test_steps" not in row:                         # rows measured with the earlier protocol (§6)
            continue
        name = row["row"].removesuffix("-reduced")
        tag = "refined" if row["test_steps"] else "encoder"
        paper = PAPER_TABLE2.get(name, (None, None))
        out.append(f"| {row['row']} | {row['epochs_run']} ({row['best_epoch']}) | {row['test_steps']} | "
                   f"{cell(row, 'test_bound_encoder_k5000')} | "
                   f"{cell(row, 'test_bound_refined_k5000') if row['test_steps'] else '(r = 0)'} | "
                   f"{cell(row, f'test_nll_{tag}_k50')} | {cell(row, f'test_nll_{tag}_k5000')} | "
                   f"{'' if paper[0] is None else paper[0]} / {'' if paper[1] is None else paper[1]} |")
    return "\n".join(out)


def main(argv=None) -> dict:
    """Train the chosen row from its config and evaluate it; returns (and writes) the row's summary."""
    if argv is None and "--summary" in sys.argv:
        print(summary_table2(Path("runs")))
        return {}
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=_rows_help(),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", choices=sorted(TABLES), required=True,
                    help="1 (continuous), 2 (binary latents) or 3 (binary-latent estimators, deep SBNs)")
    ap.add_argument("--row", required=True, help="a row of the table (listed below)")
    ap.add_argument("--out", help="run directory (default runs/tableN-ROW)")
    ap.add_argument("--resume", action="store_true", help="continue an interrupted training run")
    ap.add_argument("--nll-samples", type=int, help="Tables 1, 3: importance samples k (default 5000)")
    ap.add_argument("--subset", type=int, help="Tables 1, 3: evaluate on a random subset of the test set")
    ap.add_argument("--refine-steps", type=int, help="Tables 1, 3: test-time refinement steps (default: the run's T)")
    ap.add_argument("--test-steps", type=int, nargs="+", default=[0, 5, 10, 20],
                    help="Table 2: test-time refinement steps r to choose from on the validation split")
    ap.add_argument("--avi-rates", type=float, nargs="+",
                    help="Table 2 AVI rows: choose the step γ among these by short runs first")
    ap.add_argument("--avi-rate-epochs", type=int, default=6, help="epochs of each γ trial (default 6)")
    ap.add_argument("--epochs", type=int, help="override the config's maximum epochs")
    ap.add_argument("--threads", type=int, help="torch threads (1 when two rows share the 2 cores)")
    ap.add_argument("--data-dir", help="data directory (default $VARINF_DATA_DIR)")
    args = ap.parse_args(argv)
    rows = TABLES[args.table]
    if args.table == "2" and not (args.nll_samples is args.subset is args.refine_steps is None):
        ap.error("--nll-samples, --subset and --refine-steps apply to Table 1 rows; a Table 2 row evaluates the "
                 "whole test split at k = 50 and 5000, with r chosen among --test-steps on the validation split")
    rows = TABLES[args.table]
    if args.row not in rows:
        ap.error(f"table {args.table} has no row {args.row!r}; rows: {', '.join(rows)}")
    table = f"table{args.table}"
    config = REPO / "configs" / rows[args.row]
    out = Path(args.out or Path("runs") / f"{table}-{args.row}")      # beside the command, as varinf train --out
    cfg = make_config(config, epochs=args.epochs, threads=args.threads, data_dir=args.data_dir)
    if args.threads:
        torch.set_num_threads(args.threads)
    gamma = None
    if args.avi_rates:
        if cfg.method != "avi":
            ap.error(f"--avi-rates applies to avi rows; {args.row} trains {cfg.method}")
        best, scores = choose_avi_rate(cfg, args.avi_rates, args.avi_rate_epochs, out)
        gamma = {"chosen": best, "encoder_valid_bound_by_rate": scores, "epochs_per_trial": args.avi_rate_epochs}
        cfg = dataclasses.replace(cfg, avi_rate=best)
        if not (out / "checkpoints" / "last.json").exists():
            continue_trial(out.with_name(f"{out.name}-gamma-{best:g}"), out, cfg)
    t0 = time.perf_counter()
    result = train(cfg, out, resume=args.resume or (out / "checkpoints" / "last.json").exists(), progress=True)
    train_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    row = {
        "row": args.row,
        "config": str(config.relative_to(REPO)),
        "settings": cfg.resolved().to_dict(),          # the values the run used
        "avi_rate_selection": gamma,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "train_seconds_this_invocation": train_seconds,
        "train_seconds_total": sum(h["seconds"] for h in result.history),
        "hardware": _hardware(),
    }
    if args.table == "2":
        row.update(table2_protocol(out, args.test_steps, args.data_dir))
    else:
        ev = evaluate_run(out, nll_samples=args.nll_samples or 5000, subset=args.subset, data_dir=args.data_dir,
                          refine_steps=args.refine_steps, progress=True)
        for ours, theirs in (("encoder", ""), ("refined", "_refined")):
            for quantity, key in (("bound", "test_elbo"), ("nll", "test_nll")):
                row[f"test_{quantity}_{ours}"] = ev[key + theirs]
                row[f"test_{quantity}_{ours}_stderr"] = ev[key + theirs + "_stderr"]
        row.update(refiner=ev["refiner"], test_points=ev["test_points"], nll_samples=ev["nll_samples"])
        row.update(own_bound(out, args.data_dir))
    row["eval_seconds"] = time.perf_counter() - t0
    atomic_write_json(out / f"{table}_row.json", row)
    print(json.dumps(row, indent=2))
    return row


def _rows_help() -> str:
    return "rows:\n" + "\n".join(f"  table {t}: {', '.join(rows)}" for t, rows in TABLES.items())


if __name__ == "__main__":
    main()
