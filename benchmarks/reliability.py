"""Reliability of checkpoints and run directories: kills, concurrent writers, concurrent readers.

    fault injection   every write / fsync / rename / unlink boundary of a checkpoint save (three
                      starting states) and of a resumed training epoch is "killed" in turn
                      (tests/test_checkpoint_crash.py's FaultyOS); each must leave the complete old
                      or new checkpoint and resume to the unbroken run's exact bits
    kill -9           ``varinf train`` subprocesses (digits, 64-400-400-2 VAE: 4.5 MB checkpoints,
                      so saves are a good part of the time) are SIGKILLed at a random instant
                      after their first checkpoint, then resumed in-process and compared bit for
                      bit (weights, optimizer state, RNG state, metrics) with an unbroken run; a kill
                      "inside a save" is one that left a temporary or uncommitted weights file
    readers           meanwhile this process polls read_checkpoint("best"/"last") of the running
                      subprocess as fast as it can and counts errors
    two writers       two ``varinf train`` into the same --out started together: exactly one may run
    early kills       ``varinf train`` SIGKILLed early: every other trial at a random instant of its first
                      2.5 s (interpreter start, data), the others 0-0.5 s after the run directory appears
                      (its lock, the settings, the first epochs); then a bare ``varinf train --out RUN --resume``: it
                      must resume to the unbroken run's bits, or (no settings saved yet) refuse in one
                      line, after which the same command without --resume must give the unbroken run;
                      never a run of other settings

    python benchmarks/reliability.py --kills 20 --pairs 5 --early-kills 20
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from test_checkpoint_crash import (assert_clean, assert_same_run, kill_a_resumed_epoch_at_every_boundary,  # noqa: E402
                                   kill_a_save_at_every_boundary, make_reference)

from varinf import make_config, train  # noqa: E402
from varinf.checkpoint import read_checkpoint  # noqa: E402
from varinf.errors import CheckpointError  # noqa: E402

CFG = dict(dataset="digits", hidden=(400, 400), latent_dim=2, seed=9, patience=0)
CLI = [sys.executable, "-m", "varinf", "train", "--dataset", "digits", "--hidden", "400,400", "--latent-dim", "2",
       "--seed", "9", "--quiet"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}


def fault_injection(root: Path) -> dict:
    out = {}
    for before in ("none", "format 1", "format 2"):
        k, _ = kill_a_save_at_every_boundary(root / f"save-{before}", before)
        out[f"save onto {before}"] = k
    k, _ = kill_a_resumed_epoch_at_every_boundary(root / "epoch", *make_reference(root / "ref"))
    out["resumed epoch (metrics, best, last, metrics)"] = k
    return out


def poll(ckpt: Path, until: float, counts: dict) -> None:
    """read_checkpoint best and last in turn until ``until``; count reads and errors."""
    while time.time() < until:
        for name in ("best", "last"):
            if (ckpt / f"{name}.json").exists():
                try:
                    read_checkpoint(ckpt, name)
                    counts["reads"] += 1
                except CheckpointError as exc:
                    counts["errors"].append(str(exc))


def kill_trials(root: Path, n: int, epochs: int, rng: random.Random) -> dict:
    full = root / "full"
    train(make_config(**CFG, epochs=epochs), full, progress=False)
    identical, inside_save, counts = 0, 0, {"reads": 0, "errors": []}
    for trial in range(n):
        run = root / f"killed{trial}"
        ckpt = run / "checkpoints"
        proc = subprocess.Popen([*CLI, "--epochs", str(epochs), "--out", str(run)], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while not (ckpt / "last.json").exists() and time.time() < deadline:
            time.sleep(0.002)
        poll(ckpt, time.time() + rng.uniform(0.0, 1.0), counts)
        if proc.poll() is not None:
            raise SystemExit(f"trial {trial}: the run ended before the kill; raise --epochs")
        proc.kill()
        proc.wait()
        stale = [p.name for p in ckpt.iterdir() if p.name.startswith(".")] or len(list(ckpt.iterdir())) > 4
        inside_save += bool(stale)
        read_checkpoint(ckpt, "last")                              # loadable right after the kill
        train(make_config(**CFG, epochs=epochs), run, resume=True, progress=False)
        try:
            assert_same_run(run, full)
            assert_clean(ckpt)
            identical += 1
        except AssertionError as exc:
            print(f"trial {trial}: differs: {exc}")
    return {"kills": n, "resumed_bit_identical": identical, "kills_inside_a_save": inside_save,
            "reads": counts["reads"], "read_errors": len(counts["errors"]), "first_errors": counts["errors"][:3]}


def writer_pairs(root: Path, n: int) -> dict:
    one_ran, lock_msgs, already_msgs = 0, 0, 0
    for pair in range(n):
        out = root / f"pair{pair}"
        procs = [subprocess.Popen([*CLI, "--epochs", "5", "--out", str(out)], env=ENV, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        results = [(p.wait(), p.stderr.read()) for p in procs]
        codes = sorted(rc for rc, _ in results)
        one_ran += codes == [0, 2]
        lock_msgs += sum("another varinf process (PID" in err for _, err in results)
        already_msgs += sum("already holds a training run" in err for _, err in results)
    return {"pairs": n, "exactly_one_ran": one_ran, "refused_by_lock": lock_msgs,
            "refused_as_existing_run": already_msgs}


def early_kills(root: Path, n: int, epochs: int, rng: random.Random) -> dict:
    import contextlib
    import io

    from varinf.cli import main as cli_main

    full = root / "full"
    train(make_config(**CFG, epochs=epochs), full, progress=False)
    outcomes = {"resumed_bit_identical": 0, "refused_no_settings_then_restarted_bit_identical": 0, "other": 0}
    other = []
    for trial in range(n):
        run = root / f"early{trial}"
        argv = [*CLI, "--epochs", str(epochs), "--out", str(run)]
        proc = subprocess.Popen(argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if trial % 2:
            deadline = time.time() + 120
            while not run.exists() and proc.poll() is None and time.time() < deadline:
                time.sleep(0.001)
            time.sleep(rng.uniform(0.0, 0.5))
        else:
            time.sleep(rng.uniform(0.0, 2.5))
        if proc.poll() is not None:
            raise SystemExit(f"early kill {trial}: the run ended before the kill")
        proc.kill()
        proc.wait()
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli_main(["train", "--out", str(run), "--resume", "--quiet"])
        try:
            if code == 0:
                assert_same_run(run, full)
                outcomes["resumed_bit_identical"] += 1
            elif code == 2 and "no saved settings" in err.getvalue() and len(err.getvalue().splitlines()) == 1:
                with contextlib.redirect_stdout(io.StringIO()):
                    assert cli_main(argv[3:]) == 0
                assert_same_run(run, full)
                outcomes["refused_no_settings_then_restarted_bit_identical"] += 1
            else:
                raise AssertionError(f"exit {code}: {err.getvalue().strip()}")
        except (AssertionError, FileNotFoundError, CheckpointError) as exc:
            outcomes["other"] += 1
            other.append(f"trial {trial}: {exc}")
    return {"kills": n, **outcomes, "first_other": other[:3]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--early-kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        report = {
            "fault_injection_boundaries": fault_injection(root / "faults"),
            "kill9": kill_trials(root / "kills", args.kills, args.epochs, random.Random(args.seed)),
            "two_writers": writer_pairs(root / "pairs", args.pairs),
            "early_kills": early_kills(root / "early", args.early_kills, 5, random.Random(args.seed + 1)),
        }
    report["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    report["date"] = datetime.date.today().isoformat()
    report["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
