"""Checkpoints survive a kill at any instant; readers never see a torn checkpoint; one writer per run.

Fault injection: ``FaultyOS`` stands in for ``os`` inside ``varinf.checkpoint`` and "kills" the
writer at its k-th write / fsync / rename / unlink: a torn write keeps half its bytes, and every
later file operation of the dead writer fails too (so no ``except`` clause can tidy up, as with
SIGKILL). Every k from 1 to K, the count of a dry run, is tried. Real SIGKILLs of a training
subprocess complement it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from unittest import mock

import pytest
import torch
from safetensors.torch import save as save_bytes

from varinf import checkpoint, make_config, train
from varinf.checkpoint import read_checkpoint, remove_stale_files, save_checkpoint
from varinf.cli import main
from varinf.errors import CheckpointError
from varinf.runlock import RunLockedError, run_lock

CFG = dict(dataset="digits", hidden=(16,), latent_dim=2, seed=5, patience=0)
OWNER = "0123456789abcdef"               # the owner token a run's saves carry (config.json's run_id)
CLI_ARGS = ["--dataset", "digits", "--hidden", "16", "--latent-dim", "2", "--seed", "5", "--quiet"]


class SimulatedKill(BaseException):
    """The writer process 'died' (a BaseException, like the SIGKILL it stands for, escapes ``except Exception``)."""


class FaultyOS:
    """``os`` for varinf.checkpoint that counts write/fsync/replace/unlink calls and dies at call ``kill_at``."""

    def __init__(self, kill_at: int | None = None):
        self.kill_at, self.calls, self.dead = kill_at, 0, False

    def __getattr__(self, name):
        return getattr(os, name)

    def _dies_now(self) -> bool:
        if self.dead:
            raise SimulatedKill("file operation after the kill")
        self.calls += 1
        self.dead = self.calls == self.kill_at
        return self.dead

    def write(self, fd, data):
        if self._dies_now():
            os.write(fd, bytes(data[: len(data) // 2]))             # a torn write
            raise SimulatedKill(f"killed in write #{self.calls}")
        return os.write(fd, data)

    def fsync(self, *args):
        return self._boundary("fsync", *args)

    def replace(self, *args):
        return self._boundary("replace", *args)

    def unlink(self, *args):
        return self._boundary("unlink", *args)

    def _boundary(self, name, *args):
        if self._dies_now():
            raise SimulatedKill(f"killed before {name} #{self.calls}")
        return getattr(os, name)(*args)


def run_faulty(kill_at, fn, *args, **kwargs) -> FaultyOS:
    """Run ``fn`` with the writer killed at boundary ``kill_at`` (None: count only); returns the counter."""
    fake = FaultyOS(kill_at)
    with mock.patch.object(checkpoint, "os", fake):
        try:
            fn(*args, **kwargs)
        except SimulatedKill:
            assert kill_at is not None
        else:
            assert kill_at is None or kill_at > fake.calls, f"boundary {kill_at} was never reached"
    return fake


def checkpoint_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def assert_clean(directory: Path, names=("best", "last")):
    """Exactly NAME.json and the one weights file it commits to, per name: nothing stale."""
    expected = sorted([f"{n}.json" for n in names]
                      + [json.loads((directory / f"{n}.json").read_text())["weights_file"] for n in names])
    assert checkpoint_files(directory) == expected


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- one save, killed at every boundary ---------------------------------------------------------

def tiny(step: int) -> tuple[torch.nn.Module, dict]:
    """A model whose every parameter equals ``step``, with one Adam step of state."""
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(step)
    return model, {"model": opt}


def write_format_1(directory: Path, name: str, step: int) -> None:
    """A checkpoint as varinf wrote it before versioned weights: NAME.safetensors rewritten in place."""
    model, _ = tiny(step)
    blob = save_bytes({f"model.{k}": v for k, v in model.state_dict().items()})
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.safetensors").write_bytes(blob)
    (directory / f"{name}.json").write_text(json.dumps(
        {"format_version": 1, "step": step, "optimizers": {}, "weights_file": f"{name}.safetensors",
         "weights_sha256": hashlib.sha256(blob).hexdigest()}))


def step_of(directory: Path, name: str = "last") -> int:
    """The step of the checkpoint ``read_checkpoint`` returns, after checking tensors and record agree."""
    tensors, meta = read_checkpoint(directory, name)
    assert all(torch.all(v == meta["step"]) for k, v in tensors.items() if k.startswith("model.")), \
        "weights of one save beside the record of another"
    return meta["step"]


def save_step(directory: Path, step: int) -> None:
    model, opts = tiny(step)
    save_checkpoint(directory, "last", model=model, optimizers=opts, meta={"step": step}, owner=OWNER)


def kill_a_save_at_every_boundary(tmp_path: Path, before: str) -> tuple[int, set]:
    """Kill a save at each boundary k = 1..K, checking what is left; returns (K, outcomes seen)."""
    start = tmp_path / "start"
    start.mkdir(parents=True)
    if before == "format 1":
        write_format_1(start, "last", 1)
    elif before == "format 2":
        save_step(start, 1)
    shutil.copytree(start, tmp_path / "dry")
    boundaries = run_faulty(None, save_step, tmp_path / "dry", 2).calls
    outcomes = set()
    for k in range(1, boundaries + 1):
        d = tmp_path / f"k{k}"
        shutil.copytree(start, d)
        run_faulty(k, save_step, d, 2)
        if before == "none" and not (d / "last.json").exists():
            outcome = "none"
        else:
            outcome = step_of(d)                                    # the complete old (1) or new (2) one
        assert outcome in ({"none", 2} if before == "none" else {1, 2}), (k, outcome)
        outcomes.add(outcome)
        remove_stale_files(d, owner=OWNER)                          # the next writer's start
        if outcome != "none":
            assert_clean(d, ["last"])
            assert step_of(d) == outcome
        else:
            assert checkpoint_files(d) == []
        save_step(d, 3)                                             # and the writer carries on
        assert step_of(d) == 3
        assert_clean(d, ["last"])
    return boundaries, outcomes


@pytest.mark.parametrize("before", ["none", "format 1", "format 2"])
def test_a_save_killed_at_every_boundary_leaves_the_old_or_the_new_checkpoint(tmp_path, before):
    boundaries, outcomes = kill_a_save_at_every_boundary(tmp_path, before)
    # weights: write, fsync, rename, directory fsync; the same for the record; unlink of the old weights
    assert boundaries == (8 if before == "none" else 9)
    assert len(outcomes) == 2                                       # both sides of the commit were hit


def test_a_format_1_checkpoint_still_loads(tmp_path):
    write_format_1(tmp_path, "best", 7)
    assert step_of(tmp_path, "best") == 7
    (tmp_path / "best.safetensors").write_bytes(b"x" * 50)
    with pytest.raises(CheckpointError, match="best.safetensors are corrupt"):
        read_checkpoint(tmp_path, "best")


def test_a_record_cannot_name_a_file_outside_its_directory(tmp_path):
    save_step(tmp_path, 1)
    record = json.loads((tmp_path / "last.json").read_text())
    record["weights_file"] = "../elsewhere.safetensors"
    (tmp_path / "last.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="elsewhere.safetensors"):
        read_checkpoint(tmp_path, "last")


def test_missing_weights_are_reported_not_retried_for_ever(tmp_path):
    save_step(tmp_path, 1)
    for p in tmp_path.glob("*.safetensors"):
        p.unlink()
    with pytest.raises(CheckpointError, match=r"last-000001.safetensors named by .*last.json are missing"):
        read_checkpoint(tmp_path, "last")


def test_only_stale_files_of_the_owner_are_removed_and_none_of_an_unreadable_record(tmp_path):
    save_step(tmp_path, 1)
    save_step(tmp_path, 2)
    model, _ = tiny(9)
    ours = save_bytes({f"model.{k}": v for k, v in model.state_dict().items()}, metadata={"varinf_owner": OWNER})
    theirs = save_bytes({f"model.{k}": v for k, v in model.state_dict().items()}, metadata={"varinf_owner": "f" * 16})
    (tmp_path / "last-000003.safetensors").write_bytes(ours)                 # written, never committed
    (tmp_path / f".last.json.{OWNER}.abcd1234.tmp").write_bytes(b"{")       # a torn temporary file
    look_alikes = {"last-000007.safetensors": b"orphan", "model-000001.safetensors": theirs,
                   ".last.json.abcd1234.tmp": b"{", f".notes.txt.{OWNER[:8]}.abcd1234.tmp": b"x", "notes.txt": b"mine"}
    for name, data in look_alikes.items():
        (tmp_path / name).write_bytes(data)
    assert {p.name for p in remove_stale_files(tmp_path, owner=OWNER)} == {"last-000003.safetensors",
                                                                             f".last.json.{OWNER}.abcd1234.tmp"}
    assert all((tmp_path / n).read_bytes() == d for n, d in look_alikes.items())
    assert remove_stale_files(tmp_path, owner="f" * 16) == [tmp_path / "model-000001.safetensors"]
    (tmp_path / "last-000003.safetensors").write_bytes(ours)
    (tmp_path / "last.json").write_text("{ corrupt")
    assert remove_stale_files(tmp_path, owner=OWNER) == []         # nothing removed without a valid record
    assert "notes.txt" in checkpoint_files(tmp_path)


# ---- training killed at every boundary of its checkpoint writes ---------------------------------

def make_reference(root: Path) -> tuple[Path, Path]:
    """(1-epoch run, unbroken 2-epoch run) on digits."""
    train(make_config(**CFG, epochs=1), root / "part", progress=False)
    train(make_config(**CFG, epochs=2), root / "full", progress=False)
    return root / "part", root / "full"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return make_reference(tmp_path_factory.mktemp("ref"))


def metrics(run: Path) -> list[tuple]:
    return [(r["epoch"], r["train_elbo"], r["valid_elbo"])
            for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]


def assert_same_run(run: Path, full: Path):
    for name in ("best", "last"):
        a, ma = read_checkpoint(run / "checkpoints", name)
        b, mb = read_checkpoint(full / "checkpoints", name)
        assert same_tensors(a, b) and ma["epoch"] == mb["epoch"] and ma["rng_state"] == mb["rng_state"], name
    assert metrics(run) == metrics(full)


def kill_a_resumed_epoch_at_every_boundary(tmp_path: Path, part: Path, full: Path) -> tuple[int, set]:
    """Resume ``part`` towards ``full``, killed at each boundary k = 1..K; resume again and compare.

    Returns (K, last-checkpoint epochs seen right after the kills)."""
    cfg = make_config(**CFG, epochs=2)
    dry = tmp_path / "dry"
    shutil.copytree(part, dry)
    boundaries = run_faulty(None, train, cfg, dry, resume=True, progress=False).calls
    epochs_seen = set()
    for k in range(1, boundaries + 1):
        run = tmp_path / f"k{k}"
        shutil.copytree(part, run)
        run_faulty(k, train, cfg, run, resume=True, progress=False)
        # right after the kill: complete checkpoints of epoch 1 or 2, each equal to a reference one
        for name in ("best", "last"):
            tensors, meta = read_checkpoint(run / "checkpoints", name)
            ref = read_checkpoint((part, full)[meta["epoch"]] / "checkpoints", name)[0]
            assert same_tensors(tensors, ref), (k, name)
        epochs_seen.add(meta["epoch"])
        train(cfg, run, resume=True, progress=False)
        assert_same_run(run, full)
        assert_clean(run / "checkpoints")
        assert [p.name for p in run.iterdir() if p.name.endswith(".tmp")] == []
    return boundaries, epochs_seen


def test_resume_after_a_kill_at_every_write_boundary_is_bit_identical(tmp_path, reference):
    boundaries, epochs_seen = kill_a_resumed_epoch_at_every_boundary(tmp_path, *reference)
    assert boundaries >= 20         # metrics at start, best, last, metrics at the end of the epoch
    assert epochs_seen == {0, 1}


def test_real_sigkills_at_random_instants_then_resume_is_bit_identical(tmp_path):
    """SIGKILL a training subprocess at random instants after its first checkpoint; resume; compare."""
    epochs = 60
    full = tmp_path / "full"
    train(make_config(**CFG, epochs=epochs), full, progress=False)
    rng = random.Random(11)
    for trial in range(3):
        run = tmp_path / f"killed{trial}"
        proc = subprocess.Popen([sys.executable, "-m", "varinf", "train", *CLI_ARGS, "--epochs", str(epochs),
                                 "--out", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        deadline = time.time() + 120
        while not (run / "checkpoints" / "last.json").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.4))
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _, meta = read_checkpoint(run / "checkpoints", "last")      # loadable right after the kill
        assert 0 <= meta["epoch"] < epochs - 1
        train(make_config(**CFG, epochs=epochs), run, resume=True, progress=False)
        assert_same_run(run, full)
        assert_clean(run / "checkpoints")


# ---- readers during saves -----------------------------------------------------------------------

def test_a_reader_polling_during_saves_never_fails(tmp_path):
    save_step(tmp_path, 0)
    stop, reads, errors = threading.Event(), [], []

    def reader():
        while not stop.is_set():
            try:
                reads.append(step_of(tmp_path))
            except (CheckpointError, AssertionError, OSError) as exc:   # any failure counts
                errors.append(repr(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for step in range(1, 301):
            save_step(tmp_path, step)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert len(reads) > 100 and reads == sorted(reads)              # it read along, never going back
    assert len(set(reads)) > 20


# ---- one writer per run directory ---------------------------------------------------------------

def test_the_lock_excludes_a_second_writer_and_is_released(tmp_path):
    with run_lock(tmp_path / "run") as path:
        assert path.read_text() == f"{os.getpid()}\n"
        with pytest.raises(RunLockedError, match=rf"run is being written by another varinf process \(PID {os.getpid()}\)"):
            with run_lock(tmp_path / "run"):
                pass
    assert (tmp_path / "run" / ".lock").read_text() == ""
    with run_lock(tmp_path / "run"):                                # released: the next writer proceeds
        pass


def test_a_second_training_process_fails_fast_and_a_killed_holder_does_not_block(tmp_path, capsys):
    run = tmp_path / "run"
    args = [*CLI_ARGS, "--epochs", "100000", "--out", str(run)]
    holder = subprocess.Popen([sys.executable, "-m", "varinf", "train", *args],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 120
        while not (run / "checkpoints" / "last.json").exists() and time.time() < deadline:
            assert holder.poll() is None
            time.sleep(0.01)
        for extra in ([], ["--resume"]):                            # a fresh start and a resume alike
            assert main(["train", *args, *extra]) == 2
            err = capsys.readouterr().err
            assert f"PID {holder.pid}" in err and "another varinf process" in err and len(err.splitlines()) == 1
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    done = read_checkpoint(run / "checkpoints", "last")[1]["epoch"] + 1
    assert main(["train", *CLI_ARGS, "--epochs", str(done + 2), "--resume", "--out", str(run)]) == 0
    assert read_checkpoint(run / "checkpoints", "last")[1]["epoch"] + 1 == done + 2


# ---- a new run's settings come first ------------------------------------------------------------

class RecordingOS(FaultyOS):
    """FaultyOS that also records the target of every rename (what became visible, in order)."""

    def __init__(self, kill_at=None):
        super().__init__(kill_at)
        self.renamed = []

    def replace(self, src, dst):
        self.renamed.append(Path(dst).name)
        return super().replace(src, dst)


def test_a_new_run_writes_its_settings_first_and_a_kill_before_them_is_a_clear_error(tmp_path, reference):
    """config.json is the first file a new run makes visible; killed at each boundary of that write, the run
    either resumes (settings complete) to the unbroken run's bits, or --resume is a one-line error saying to start
    again -- never a run of other (default) settings."""
    part, _ = reference
    cfg = make_config(**CFG, epochs=1)
    dry = RecordingOS()
    with mock.patch.object(checkpoint, "os", dry):
        train(cfg, tmp_path / "dry", progress=False)
    assert dry.renamed[0] == "config.json" and dry.renamed[1] == "metrics.jsonl"
    for k in range(1, 5):                                # write, fsync, rename, directory fsync of config.json
        run = tmp_path / f"k{k}"
        run_faulty(k, train, cfg, run, progress=False)
        assert {p.name for p in run.iterdir() if not p.name.startswith(".")} <= {"config.json"}
        if (run / "config.json").exists():
            assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 0
            assert_same_run(run, part)
        else:
            with pytest.raises(CheckpointError, match="no saved settings .*without --resume"):
                train(cfg, run, resume=True, progress=False)
            assert main(["train", *CLI_ARGS, "--epochs", "1", "--out", str(run)]) == 0   # started again
            assert_same_run(run, part)
        assert_clean(run / "checkpoints")
        # the killed attempt's torn settings file carries the token of a run that never saved it, so no later
        # run can prove it wrote it: it stays (hidden, at most a few kB), like any file varinf cannot claim
        left = [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
        assert left == [] or (k <= 3 and len(left) == 1 and left[0].startswith(".config.json.")), left
