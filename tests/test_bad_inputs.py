"""The bad-input catalogue (issue #11, item 5): every bad input a user can give gets a clear error.

Each case is one row of a table and asserts three things:

* the outcome: ``varinf ...`` exits with status 2 (a CLI case), or the call raises a varinf error
  or the right built-in exception type (an API case);
* the message: ONE line (no traceback, no newline) that names the setting or file and the value.
  For a flag that argparse rejects, argparse's usage block comes first and the error is the one
  line after it (``varinf train: error: argument --model: invalid choice: ...``);
* no side effect: every file and directory under the case's workspace (the run directory, data
  files, configs, files outside the run that symbolic links in it point to) is byte-identical
  afterwards, and nothing new appears: a failed ``varinf train --out NEW`` leaves no ``NEW`` (the
  settings, data and model are checked before the run directory is created);
* a bounded message: the error line is at most ``MAX_LINE`` characters however long the bad value;
* no hang: a case that would block (a FIFO where a file is read) fails after ``HANG_SECONDS``.

CLI cases run ``varinf.cli.main`` in-process (an uncaught exception is the traceback a user would
see). A case that needs a trained run gets a copy of one tiny run (digits, 16 hidden units, 2
latents, 1 epoch) trained once per module. Run: ``pytest -q tests/test_bad_inputs.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import signal
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import varinf
from varinf.checkpoint import read_checkpoint
from varinf.cli import main
from varinf.errors import CheckpointError, ConfigError, DataError, DatasetNotFoundError, VarinfError

FAST = ["--dataset", "digits", "--hidden", "16", "--latent-dim", "2", "--epochs", "1", "--quiet"]
# TOML settings of a fast run; a case's own lines replace these keys.
FAST_TOML = {"dataset": '"digits"', "hidden": "[16]", "latent_dim": "2", "epochs": "1"}


def cli(*argv) -> int:
    try:
        return main([str(a) for a in argv])
    except SystemExit as exc:                        # argparse
        return exc.code


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("trained") / "run"
    assert cli("train", *FAST, "--out", run) == 0
    return run


class Workspace:
    """A case's directory: ``run`` (a copy of the trained run), files written on demand, ``out`` (a new run dir)."""

    def __init__(self, root: Path, trained: Path):
        self.root = root
        self.run = root / "run"
        shutil.copytree(trained, self.run)
        self.out = root / "new-run"

    # ---- files
    def file(self, name: str, data: bytes | str) -> Path:
        path = self.root / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def toml(self, **lines: str) -> Path:
        """A config file: the fast settings with ``lines`` (raw TOML values) replacing or adding keys."""
        body = {**FAST_TOML, **lines}
        return self.file("c.toml", "".join(f"{k} = {v}\n" for k, v in body.items()))

    def npy(self, array, name: str = "x.npy", allow_pickle: bool = False) -> Path:
        path = self.root / name
        np.save(path, array, allow_pickle=allow_pickle)
        return path

    def npz(self, name: str = "x.npz", **arrays) -> Path:
        path = self.root / name
        np.savez(path, **arrays)
        return path

    # ---- checkpoints
    def ckpt(self, name: str = "best") -> Path:
        return self.run / "checkpoints" / f"{name}.json"

    def edit(self, path: Path, change: Callable[[dict], None]) -> Path:
        meta = json.loads(path.read_text())
        change(meta)
        path.write_text(json.dumps(meta))
        return self.run

    def weights(self, name: str = "best") -> Path:
        return self.run / "checkpoints" / json.loads(self.ckpt(name).read_text())["weights_file"]


def _state(p: Path) -> str:
    st = os.lstat(p)
    if stat.S_ISLNK(st.st_mode):
        return f"link to {os.readlink(p)}"
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if not stat.S_ISREG(st.st_mode):
        return "fifo or device"
    return hashlib.sha256(p.read_bytes()).hexdigest()


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` (links not followed): a directory marker, a link's target, or the file's SHA-256."""
    return {str(p.relative_to(root)): _state(p) for p in sorted(root.rglob("*"))}


MAX_LINE = 1100                    # varinf.cli.MAX_ERROR_CHARS plus the "varinf CMD: error: " prefix
HANG_SECONDS = 120


@pytest.fixture
def no_hang():
    """Fail (instead of blocking the suite for ever) when a case blocks, e.g. opening a FIFO."""
    def hang(signum, frame):
        raise TimeoutError(f"blocked for {HANG_SECONDS} s")
    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(HANG_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def error_line(stderr: str) -> str:
    """The one error line of ``stderr``, after argparse's usage block if there is one."""
    lines = stderr.strip("\n").splitlines()
    if lines and lines[0].startswith("usage:"):
        lines = lines[1:]
        while lines and lines[0].startswith(" "):
            lines = lines[1:]
    assert len(lines) == 1, f"expected one error line, got:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


def digits01(n=20, d=64, seed=0):
    return (np.random.default_rng(seed).random((n, d)) > 0.5).astype(np.float32)


@dataclass
class Case:
    id: str
    argv: Callable[[Workspace], list]          # CLI arguments, built in the workspace
    needles: tuple[str, ...]                   # what the message must name (setting/file and value)
    xfail: str | None = None
    env: dict | None = None                    # environment variables set for the case

    def param(self):
        marks = [pytest.mark.xfail(strict=True, reason=self.xfail)] if self.xfail else []
        return pytest.param(self, id=self.id, marks=marks)


def train(ws, *extra):
    return ["train", *FAST, "--out", ws.out, *extra]


def toml_case(id, needles, xfail=None, **lines):
    return Case(id, lambda ws: ["train", "--config", ws.toml(**lines), "--out", ws.out, "--quiet"], needles, xfail)


def data_case(id, make_file, needles, *extra, xfail=None):
    """``varinf train --dataset FILE`` on a file made by ``make_file(ws)``."""
    return Case(id, lambda ws: train(ws, "--dataset", make_file(ws), *extra), needles, xfail)


def resume(ws, *extra):
    return ["train", "--out", ws.run, "--resume", "--epochs", "2", "--quiet", *extra]


def evaluate(ws, *extra):
    return ["eval", ws.run, "--nll-samples", "5", "--quiet", *extra]


def _pickle_npy(ws):
    return ws.file("p.npy", pickle.dumps({"a": 1}))


def _other_shape_weights(ws):
    """Weights of another architecture (a wider first layer) under best.json, with a matching SHA-256."""
    from safetensors.torch import save as save_bytes
    tensors, _ = read_checkpoint(ws.run / "checkpoints", "best")
    key = next(k for k, v in tensors.items() if k.startswith("model.") and v.ndim == 2)
    tensors[key] = torch.cat([tensors[key], tensors[key]], dim=0)
    blob = save_bytes(tensors)
    ws.weights().write_bytes(blob)
    ws.edit(ws.ckpt(), lambda m: m.update(weights_sha256=hashlib.sha256(blob).hexdigest()))
    return ws.run


def _crafted_weights(ws, name: str, change: Callable[[dict], None]) -> Path:
    """The weights of checkpoint ``name`` changed by ``change(tensors)``, with a matching SHA-256 (only the
    contents are wrong, as a crafted or a bit-flipped-then-rehashed file would be)."""
    from safetensors.torch import save as save_bytes
    tensors, _ = read_checkpoint(ws.run / "checkpoints", name)
    change(tensors)
    blob = save_bytes(tensors)
    ws.weights(name).write_bytes(blob)
    ws.edit(ws.ckpt(name), lambda m: m.update(weights_sha256=hashlib.sha256(blob).hexdigest()))
    return ws.run


def _first(tensors: dict, prefix: str) -> str:
    return next(k for k, v in tensors.items() if prefix in k and v.is_floating_point() and v.numel())


def _poison(prefix: str, value: float):
    def change(tensors):
        key = _first(tensors, prefix)
        tensors[key] = tensors[key].clone()
        tensors[key].view(-1)[0] = value
    return change


def _fifo(path: Path) -> Path:
    """Replace ``path`` by a FIFO (reading it blocks until a writer opens it: none ever does)."""
    if path.exists():
        path.unlink()
    os.mkfifo(path)
    return path


def _outside(ws, name: str = "outside.txt") -> Path:
    """A file outside the run directory that a link inside it points to (must never change)."""
    return ws.file(name, "a user's file outside the run; varinf must not touch it\n")


def _link(link: Path, target: Path) -> Path:
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    elif link.exists() or link.is_symlink():
        link.unlink()
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return link


def _moved_checkpoints(ws) -> Path:
    """checkpoints/ moved outside the run and linked back."""
    elsewhere = ws.root / "elsewhere-checkpoints"
    shutil.move(ws.run / "checkpoints", elsewhere)
    _link(ws.run / "checkpoints", elsewhere)
    return ws.run


def _early_kill(ws) -> Path:
    """What a kill in the first instant of a run left: the directory and its empty lock, no settings yet."""
    early = ws.root / "early"
    early.mkdir()
    (early / ".lock").write_bytes(b"")
    return early


def _bomb(ws) -> Path:
    """20 MB of zeros compressed into an .npz of a few tens of kB (the case lowers the limit to 10 MB: a
    5 GB bomb takes as long to build as to expand)."""
    path = ws.root / "bomb.npz"
    np.savez_compressed(path, train=np.zeros((20_000, 1000), np.uint8), valid=np.zeros((10, 1000), np.uint8))
    return path


def _lying_header(ws) -> Path:
    """An .npy whose header declares (10**7, 10**7) float32 (400 TB) over 64 bytes of data."""
    path = ws.root / "liar.npy"
    np.save(path, np.zeros((4, 4), np.float32))
    data = path.read_bytes().replace(b"(4, 4)", b"(10000000, 10000000)".ljust(6))
    path.write_bytes(data)
    return path


def _fifo_data_dir(ws) -> Path:
    d = ws.root / "fifo-data"
    d.mkdir()
    _fifo(d / "binarized_mnist.npz")
    return d


def _write(path: Path, data: str) -> Path:
    path.write_text(data)
    return path


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


CLI_CASES = [
    # ---- TOML settings: the examples, then every field type with a wrong type or range
    toml_case("toml-batch_size-float", ("batch_size", "1.5"), batch_size="1.5"),
    toml_case("toml-latent_dim-float", ("latent_dim", "2.5"), latent_dim="2.5"),
    toml_case("toml-seed-string", ("seed", "zero"), seed='"zero"'),
    toml_case("toml-hidden-negative", ("hidden", "-5"), hidden="[-5]"),
    toml_case("toml-cnn-channels-zero", ("channels", "0"), model='"cnn"', channels="[0]"),
    toml_case("toml-epochs-string", ("epochs", "ten"), epochs='"ten"'),
    toml_case("toml-epochs-bool", ("epochs", "True"), epochs="true"),
    toml_case("toml-lr-string", ("lr", "fast"), lr='"fast"'),
    toml_case("toml-lr-negative", ("lr", "-1"), lr="-1.0"),
    toml_case("toml-lr-nan", ("lr", "nan"), lr="nan"),
    toml_case("toml-lr-inf", ("lr", "inf"), lr="inf"),
    toml_case("toml-optimizer-int", ("optimizer", "3"), optimizer="3"),
    toml_case("toml-optimizer-unknown", ("optimizer", "sgd2"), optimizer='"sgd2"'),
    toml_case("toml-binarize-string", ("binarize", "yes"), binarize='"yes"'),
    toml_case("toml-hidden-string", ("hidden", "wide"), hidden='"wide"'),
    toml_case("toml-hidden-float", ("hidden", "1.5"), hidden="[1.5]"),
    toml_case("toml-hidden-table", ("hidden", "a"), hidden="{a = 1}"),
    toml_case("toml-device-int", ("device", "5"), device="5"),
    toml_case("toml-device-unknown", ("device", "tpu"), device='"tpu"'),
    toml_case("toml-threads-float", ("threads", "1.5"), threads="1.5"),
    toml_case("toml-patience-negative", ("patience", "-1"), patience="-1"),
    toml_case("toml-avi_rate-above-1", ("avi_rate", "2"), method='"avi"', model='"sbn"', avi_rate="2.0"),
    toml_case("toml-method-unknown", ("method", "nope"), method='"nope"'),
    toml_case("toml-method-wrong-family", ("method", "vae", "sbn"), method='"vae"', model='"sbn"'),
    toml_case("toml-dataset-int", ("dataset", "7"), dataset="7"),
    toml_case("toml-data_dir-empty", ("data_dir", "''"), data_dir='""'),
    toml_case("toml-estimator-unknown", ("estimator", "C"), estimator='"C"'),
    toml_case("toml-activation-unknown", ("activation", "sigmoid2"), activation='"sigmoid2"'),
    toml_case("toml-samples-zero", ("samples", "0"), samples="0"),
    toml_case("toml-valid_samples-zero", ("valid_samples", "0"), valid_samples="0"),
    toml_case("toml-warmup_steps-negative", ("warmup_steps", "-1"), warmup_steps="-1"),
    toml_case("toml-seed-negative", ("seed", "-3"), seed="-3"),
    toml_case("toml-seed-too-large", ("seed", str(2 ** 63)), seed=str(2 ** 63)),
    toml_case("toml-unknown-key", ("c.toml", "colour"), colour='"red"'),
    toml_case("toml-date-value", ("epochs", "1979"), epochs="1979-05-27"),
    Case("toml-train-not-a-table", lambda ws: ["train", "--config", ws.file("c.toml", "train = 5\n"), "--out",
                                               ws.out], ("c.toml", "[train]")),
    Case("toml-syntax-error", lambda ws: ["train", "--config", ws.file("c.toml", "epochs = = 1\n"), "--out",
                                          ws.out], ("c.toml", "TOML")),
    Case("toml-not-utf8", lambda ws: ["train", "--config", ws.file("c.toml", b"epochs = \xff\xfe\n"), "--out",
                                      ws.out], ("c.toml",)),
    Case("toml-missing", lambda ws: ["train", "--config", ws.root / "none.toml", "--out", ws.out],
         ("none.toml", "does not exist")),
    Case("config-is-a-directory", lambda ws: ["train", "--config", ws.root, "--out", ws.out],
         (None, "directory")),
    # ---- train flags
    Case("flag-threads-negative", lambda ws: train(ws, "--threads", "-1"), ("threads", "-1")),
    Case("flag-seed-2**70", lambda ws: train(ws, "--seed", str(2 ** 70)), ("seed", str(2 ** 70))),
    Case("flag-seed-negative", lambda ws: train(ws, "--seed", "-1"), ("seed", "-1")),
    Case("flag-out-is-a-file", lambda ws: train(ws)[:-2] + ["--out", ws.file("f.txt", "keep me")],
         ("f.txt", "file")),
    Case("flag-inference-rate-inf", lambda ws: train(ws, "--method", "gbvi", "--refine-steps", "1",
                                                     "--inference-rate", "inf"), ("inference_rate", "inf")),
    Case("flag-inference-rate-zero", lambda ws: train(ws, "--method", "gbvi", "--inference-rate", "0"),
         ("inference_rate", "0")),
    Case("flag-hidden-zero", lambda ws: train(ws, "--hidden", "0"), ("hidden", "0")),
    Case("flag-hidden-not-int", lambda ws: train(ws, "--hidden", "5,x"), ("--hidden", "5,x")),
    Case("flag-epochs-zero", lambda ws: train(ws, "--epochs", "0"), ("epochs", "0")),
    Case("flag-epochs-not-int", lambda ws: train(ws, "--epochs", "abc"), ("--epochs", "abc")),
    Case("flag-lr-nan", lambda ws: train(ws, "--lr", "nan"), ("lr", "nan")),
    Case("flag-lr-zero", lambda ws: train(ws, "--lr", "0"), ("lr", "0")),
    Case("flag-batch-size-zero", lambda ws: train(ws, "--batch-size", "0"), ("batch_size", "0")),
    Case("flag-samples-zero", lambda ws: train(ws, "--samples", "0"), ("samples", "0")),
    Case("flag-latent-dim-zero", lambda ws: train(ws, "--latent-dim", "0"), ("latent_dim", "0")),
    Case("flag-patience-negative", lambda ws: train(ws, "--patience", "-1"), ("patience", "-1", "0 disables")),
    Case("flag-refine-steps-negative", lambda ws: train(ws, "--method", "gbvi", "--refine-steps", "-1"),
         ("refine_steps", "-1")),
    Case("flag-warmup-negative", lambda ws: train(ws, "--warmup-steps", "-2"), ("warmup_steps", "-2")),
    Case("flag-avi-rate-above-1", lambda ws: train(ws, "--model", "sbn", "--method", "avi", "--avi-rate", "1.5"),
         ("avi_rate", "1.5")),
    Case("flag-model-unknown", lambda ws: train(ws, "--model", "rnn"), ("--model", "rnn")),
    Case("flag-estimator-unknown", lambda ws: train(ws, "--estimator", "C"), ("--estimator", "C")),
    Case("flag-optimizer-unknown", lambda ws: train(ws, "--optimizer", "sgd"), ("--optimizer", "sgd")),
    Case("flag-method-unknown", lambda ws: train(ws, "--method", "magic"), ("method", "magic")),
    Case("flag-activation-unknown", lambda ws: train(ws, "--activation", "swish9"), ("activation", "swish9")),
    Case("flag-device-unknown", lambda ws: train(ws, "--device", "tpu"), ("device", "tpu")),
    Case("flag-dataset-unknown", lambda ws: train(ws, "--dataset", "cifar"), ("cifar",)),
    Case("flag-dataset-missing-file", lambda ws: train(ws, "--dataset", ws.root / "none.npy"), ("none.npy",)),
    toml_case("toml-cnn-channels-empty", ("channels", "[]"), model='"cnn"', channels="[]"),
    # ---- data files
    data_case("data-random-bytes-npz", lambda ws: ws.file("junk.npz", np.random.default_rng(0).bytes(4000)),
              ("junk.npz", "not a .npz file")),
    data_case("data-random-bytes-npy", lambda ws: ws.file("junk.npy", np.random.default_rng(1).bytes(4000)),
              ("junk.npy", "not a .npy file")),
    data_case("data-raw-pickle-as-npy", _pickle_npy, ("p.npy", "pickle")),
    data_case("data-object-array-npy", lambda ws: ws.npy(np.array([{"a": 1}, None], dtype=object),
                                                         allow_pickle=True), ("x.npy", "object")),
    data_case("data-object-array-npz", lambda ws: (np.savez(ws.root / "o.npz", train=np.array([1, "a"], dtype=object)),
                                                   ws.root / "o.npz")[1], ("o.npz", "object")),
    data_case("data-nan", lambda ws: ws.npy(np.where(np.eye(20, 64) > 0, np.nan, digits01())), ("x.npy", "NaN")),
    data_case("data-inf", lambda ws: ws.npy(np.where(np.eye(20, 64) > 0, np.inf, digits01())),
              ("x.npy", "infinite")),
    data_case("data-1d", lambda ws: ws.npy(digits01()[0]), ("x.npy", "(64,)")),
    data_case("data-4d", lambda ws: ws.npy(digits01().reshape(20, 4, 4, 4)), ("x.npy", "(20, 4, 4, 4)")),
    data_case("data-empty", lambda ws: ws.npy(np.zeros((0, 64), np.float32)), ("x.npy", "(0, 64)")),
    data_case("data-no-columns", lambda ws: ws.npy(np.zeros((10, 0), np.float32)), ("x.npy", "(10, 0)")),
    data_case("data-strings", lambda ws: ws.npy(np.array([["a", "b"]] * 10)), ("x.npy", "<U1")),
    data_case("data-complex", lambda ws: ws.npy(digits01().astype(np.complex64)), ("x.npy", "complex")),
    data_case("data-0..255", lambda ws: ws.npy((digits01() * 255).astype(np.uint8)), ("x.npy", "255", "[0, 1]")),
    data_case("data-negative", lambda ws: ws.npy(digits01() - 1), ("x.npy", "-1", "[0, 1]")),
    data_case("data-grey-without-binarize", lambda ws: ws.npy(np.full((20, 64), 0.5, np.float32)),
              ("x.npy", "binar")),
    data_case("data-3-rows", lambda ws: ws.npy(digits01(n=3)), ("x.npy", "3 row")),
    data_case("data-2-rows", lambda ws: ws.npy(digits01(n=2)), ("x.npy", "2 row")),
    data_case("data-npz-several-no-train", lambda ws: ws.npz(a=digits01(), b=digits01()), ("x.npz", "'train'")),
    data_case("data-npz-feature-mismatch", lambda ws: ws.npz(train=digits01(), valid=digits01(d=32)),
              ("x.npz", "(32,)")),
    data_case("data-npz-no-valid", lambda ws: ws.npz(train=digits01()), ("x.npz", "valid")),
    data_case("data-npz-empty", lambda ws: ws.npz(), ("x.npz", "[]")),
    data_case("data-is-a-directory", lambda ws: (ws.root / "d.npy").mkdir() or ws.root / "d.npy", ("d.npy", "not a file")),
    data_case("data-cnn-not-images", lambda ws: ws.npy(digits01(d=7)), ("cnn", "image"), "--model", "cnn"),
    # ---- train on an existing run
    Case("train-over-existing-run", lambda ws: ["train", *FAST, "--out", ws.run], ("run", "--resume")),
    Case("resume-other-settings", lambda ws: resume(ws, "--latent-dim", "3"), ("latent_dim", "3")),
    Case("resume-unknown-config-key", lambda ws: ws.edit(ws.run / "config.json",
                                                         lambda m: m["train"].update(colour="red")) and resume(ws),
         ("config.json", "colour")),
    Case("resume-config-json-garbage", lambda ws: _write(ws.run / "config.json", "{not json") and resume(ws),
         ("config.json",)),
    Case("resume-garbage-rng_state", lambda ws: ws.edit(ws.ckpt("last"), lambda m: m.update(rng_state="!!garbage"))
         and resume(ws), ("last.json", "rng_state")),
    Case("resume-rng_state-wrong-length", lambda ws: ws.edit(ws.ckpt("last"), lambda m: m.update(rng_state="AAAA"))
         and resume(ws), ("last.json", "RNG state")),
    Case("resume-no-history", lambda ws: ws.edit(ws.ckpt("last"), lambda m: m.pop("history")) and resume(ws),
         ("last.json", "history")),
    Case("resume-history-not-a-list", lambda ws: ws.edit(ws.ckpt("last"), lambda m: m.update(history=5))
         and resume(ws), ("last.json", "history")),
    Case("resume-epoch-string", lambda ws: ws.edit(ws.ckpt("last"), lambda m: m.update(epoch="one"))
         and resume(ws), ("last.json", "epoch")),
    Case("resume-truncated-last-json", lambda ws: _write(ws.ckpt("last"), ws.ckpt("last").read_text()[:200])
         and resume(ws), ("last.json", "corrupt")),
    # ---- eval flags
    Case("eval-batch-size-zero", lambda ws: evaluate(ws, "--batch-size", "0"), ("batch_size", "0")),
    Case("eval-nll-samples-zero", lambda ws: evaluate(ws, "--nll-samples", "0"), ("nll_samples", "0")),
    Case("eval-subset-zero", lambda ws: evaluate(ws, "--subset", "0"), ("--subset", "0")),
    Case("eval-output-is-a-directory", lambda ws: evaluate(ws, "--output", ws.root), ("--output", "directory")),
    Case("eval-device-bogus", lambda ws: evaluate(ws, "--device", "bogus"), ("device", "bogus")),
    Case("eval-refine-sweep-negative", lambda ws: evaluate(ws, "--refine-sweep", "-1"), ("--refine-sweep", "-1")),
    Case("eval-refine-steps-negative", lambda ws: evaluate(ws, "--refine-steps", "-1"), ("refine_steps", "-1")),
    Case("eval-avi-rate-on-gradient-refiner", lambda ws: evaluate(ws, "--avi-rate", "0.5"), ("--avi-rate",)),
    Case("eval-checkpoint-unknown", lambda ws: evaluate(ws, "--checkpoint", "middle"), ("--checkpoint", "middle")),
    Case("eval-missing-run-dir", lambda ws: ["eval", ws.root / "nope", "--quiet"], ("nope", "does not exist")),
    Case("eval-dir-without-checkpoint", lambda ws: ((ws.root / "empty").mkdir(), ["eval", ws.root / "empty"])[1],
         ("empty", "checkpoint")),
    # ---- checkpoints read by eval
    Case("ckpt-unknown-config-key", lambda ws: ws.edit(ws.ckpt(), lambda m: m["config"].update(colour="red"))
         and evaluate(ws), ("best.json", "colour")),
    Case("ckpt-config-bad-value", lambda ws: ws.edit(ws.ckpt(), lambda m: m["config"].update(latent_dim="x"))
         and evaluate(ws), ("best.json", "latent_dim", "x")),
    Case("ckpt-no-config", lambda ws: ws.edit(ws.ckpt(), lambda m: m.pop("config")) and evaluate(ws),
         ("best.json", "config")),
    Case("ckpt-no-model", lambda ws: ws.edit(ws.ckpt(), lambda m: m.pop("model")) and evaluate(ws),
         ("best.json", "model")),
    Case("ckpt-unknown-model-kind", lambda ws: ws.edit(ws.ckpt(), lambda m: m.update(model_kind="rnn"))
         and evaluate(ws), ("best.json", "rnn")),
    Case("ckpt-no-epoch", lambda ws: ws.edit(ws.ckpt(), lambda m: m.pop("epoch")) and evaluate(ws),
         ("best.json", "epoch")),
    Case("ckpt-truncated-json", lambda ws: _write(ws.ckpt(), ws.ckpt().read_text()[:100]) and evaluate(ws),
         ("best.json", "corrupt")),
    Case("ckpt-json-is-a-list", lambda ws: _write(ws.ckpt(), "[1, 2]") and evaluate(ws), ("best.json",)),
    Case("ckpt-format-version", lambda ws: ws.edit(ws.ckpt(), lambda m: m.update(format_version=99))
         and evaluate(ws), ("best.json", "format")),
    Case("ckpt-weights-other-shape", lambda ws: _other_shape_weights(ws) and evaluate(ws),
         ("another configuration", "shape")),
    Case("ckpt-weights-corrupt", lambda ws: _write_bytes(ws.weights(), b"\0" * 100) and evaluate(ws),
         ("safetensors", "corrupt")),
    Case("ckpt-weights-missing", lambda ws: (ws.weights().unlink(), evaluate(ws))[1], ("safetensors", "missing")),
    Case("ckpt-weights-outside-dir", lambda ws: ws.edit(ws.ckpt(), lambda m: m.update(
        weights_file="../../x.safetensors")) and evaluate(ws), ("best.json", "../../x.safetensors")),
    Case("ckpt-weights-absolute-path", lambda ws: ws.edit(ws.ckpt(), lambda m: m.update(
        weights_file="/etc/passwd")) and evaluate(ws), ("best.json", "/etc/passwd")),
    # ---- plot
    Case("plot-missing-dir", lambda ws: ["plot", ws.root / "nope"], ("nope", "does not exist")),
    Case("plot-dir-without-checkpoint", lambda ws: ((ws.root / "empty").mkdir(), ["plot", ws.root / "empty"])[1],
         ("empty", "checkpoint")),
    Case("plot-metrics-garbage", lambda ws: _write(ws.run / "metrics.jsonl", "{oops\n") and ["plot", ws.run],
         ("metrics.jsonl",)),
    Case("plot-checkpoint-unknown", lambda ws: ["plot", ws.run, "--checkpoint", "x"], ("--checkpoint", "'x'")),
    # ---- issue #18: negative flag values, regressions, bounded messages
    Case("flag-lr-negative-exponent", lambda ws: train(ws, "--lr", "-1e-3"), ("lr", "-0.001")),
    Case("flag-inference-rate-minus-inf", lambda ws: train(ws, "--method", "gbvi", "--inference-rate", "-inf"),
         ("inference_rate", "-inf")),
    Case("eval-seed-negative", lambda ws: evaluate(ws, "--seed", "-1"), ("seed", "-1")),
    Case("plot-seed-negative", lambda ws: ["plot", ws.run, "--seed", "-1"], ("seed", "-1")),
    Case("flag-out-name-too-long", lambda ws: train(ws)[:-2] + ["--out", ws.root / ("x" * 300)],
         ("File name too long",)),
    toml_case("toml-nested-too-deeply", ("c.toml", "deeply"), hidden="[" * 3000 + "]" * 3000),
    Case("flag-activation-5MB", lambda ws: train(ws, "--activation", "x" * 5_000_000), ("activation", "characters")),
    Case("flag-epochs-5MB", lambda ws: train(ws, "--epochs", "9x" * 2_500_000), ("--epochs", "characters")),
    # ---- issue #18: resume only continues the run that was started
    Case("resume-before-settings-were-saved", lambda ws: ["train", "--out", _early_kill(ws), "--resume", "--quiet"],
         ("early", "config.json", "without --resume")),
    Case("resume-missing-dir", lambda ws: ["train", "--out", ws.root / "nope", "--resume", "--quiet"],
         ("nope", "config.json")),
    Case("resume-checkpoints-deleted", lambda ws: (shutil.rmtree(ws.run / "checkpoints"), resume(ws))[1],
         ("metrics.jsonl", "1 trained epoch", "checkpoints")),
    Case("resume-fewer-epochs-than-done", lambda ws: _two_epochs(ws) and
         ["train", "--out", ws.run, "--resume", "--epochs", "1", "--quiet"], ("epochs 1", "2 epochs")),
    # ---- issue #18: checkpoint contents checked, not only hashed
    Case("ckpt-weights-nan", lambda ws: _crafted_weights(ws, "best", _poison("model.", float("nan")))
         and evaluate(ws), ("best-000001.safetensors", "NaN or infinite")),
    Case("ckpt-weights-inf", lambda ws: _crafted_weights(ws, "best", _poison("model.", float("inf")))
         and ["plot", ws.run], ("best-000001.safetensors", "NaN or infinite")),
    Case("resume-optimizer-state-inf", lambda ws: _crafted_weights(ws, "last", _poison("/optim.", float("inf")))
         and resume(ws), ("last-000001.safetensors", "/optim.", "NaN or infinite")),
    Case("resume-epoch-absurd", lambda ws: ws.edit(ws.ckpt("last"), lambda m: m.update(epoch=10 ** 9))
         and resume(ws), ("last.json", "epoch 1000000000")),
    Case("ckpt-history-longer-than-epochs", lambda ws: ws.edit(ws.ckpt(), lambda m: m.update(
        history=m["history"] * 3)) and evaluate(ws), ("best.json", "history")),
    Case("ckpt-best-epoch-outside-history", lambda ws: ws.edit(ws.ckpt("last"), lambda m: m.update(best_epoch=7))
         and resume(ws), ("last.json", "best_epoch 7")),
    Case("ckpt-best-valid-nan", lambda ws: ws.edit(ws.ckpt(), lambda m: m.update(best_valid_elbo=float("nan")))
         and evaluate(ws), ("best.json", "best_valid_elbo")),
    Case("ckpt-sizes-ask-for-terabytes", lambda ws: ws.edit(ws.ckpt(), lambda m: m["model"].update(
        latent_dim=4_000_000, hidden=[4_000_000, 4_000_000])) and evaluate(ws), ("another configuration", "best.json")),
    Case("resume-config-json-asks-for-terabytes", lambda ws: ws.edit(ws.run / "config.json", lambda c: c["train"].update(
        latent_dim=4_000_000, hidden=[4_000_000, 4_000_000])) and resume(ws), ("latent_dim=4000000", "GiB")),
    Case("train-latent-dim-asks-for-terabytes", lambda ws: train(ws, "--latent-dim", "100000000000"),
         ("latent_dim=100000000000", "GiB")),
    # ---- issue #18: only regular files are read (a FIFO would block for ever)
    Case("ckpt-weights-fifo", lambda ws: _fifo(ws.weights()) and evaluate(ws), ("best-000001.safetensors", "regular")),
    Case("ckpt-record-fifo", lambda ws: _fifo(ws.ckpt()) and ["plot", ws.run], ("best.json", "regular")),
    Case("resume-config-json-fifo", lambda ws: _fifo(ws.run / "config.json") and resume(ws),
         ("config.json", "regular")),
    Case("plot-metrics-fifo", lambda ws: _fifo(ws.run / "metrics.jsonl") and ["plot", ws.run],
         ("metrics.jsonl", "regular")),
    Case("toml-fifo", lambda ws: ["train", "--config", _fifo(ws.root / "c.toml"), "--out", ws.out],
         ("c.toml", "regular")),
    Case("data-bmnist-npz-fifo", lambda ws: train(ws, "--dataset", "binarized-mnist", "--data-dir", _fifo_data_dir(ws)),
         ("binarized_mnist.npz", "regular")),
    # ---- issue #18: sizes declared by data files checked before loading
    Case("data-npz-zip-bomb", lambda ws: train(ws, "--dataset", _bomb(ws)), ("bomb.npz", "VARINF_MAX_DATA_BYTES"),
         env={"VARINF_MAX_DATA_BYTES": str(10 ** 7)}),
    Case("data-npz-over-lowered-limit", lambda ws: train(ws, "--dataset", ws.npz(train=digits01(), valid=digits01())),
         ("x.npz", "VARINF_MAX_DATA_BYTES"), env={"VARINF_MAX_DATA_BYTES": "1000"}),
    Case("data-limit-not-a-number", lambda ws: train(ws, "--dataset", ws.npy(digits01())),
         ("VARINF_MAX_DATA_BYTES", "lots"), env={"VARINF_MAX_DATA_BYTES": "lots"}),
    data_case("data-npy-header-asks-400TB", _lying_header, ("liar.npy", "declares")),
    # ---- issue #18: nothing written, locked or deleted through a symbolic link in a run directory
    Case("lock-is-a-link", lambda ws: _link(ws.run / ".lock", _outside(ws)) and resume(ws), (".lock", "symbolic link")),
    Case("lock-is-a-link-refused-run", lambda ws: _link(ws.run / ".lock", _outside(ws))
         and train(ws)[:-2] + ["--out", ws.run], (".lock", "symbolic link")),
    Case("checkpoints-is-a-link", lambda ws: _moved_checkpoints(ws) and resume(ws), ("checkpoints", "symbolic link")),
    Case("config-json-is-a-link", lambda ws: _link(ws.run / "config.json", _write(ws.root / "cfg-copy.json",
                                                                                   (ws.run / "config.json").read_text()
                                                                                   if (ws.run / "config.json").exists()
                                                                                   else "")) and resume(ws),
         ("config.json", "symbolic link")),
    Case("plot-figure-is-a-link", lambda ws: _link(ws.run / "figures" / "samples.png", _outside(ws, "pic.png"))
         and ["plot", ws.run], ("samples.png", "symbolic link")),
    Case("plot-figures-dir-is-a-link", lambda ws: _link(ws.run / "figures", (ws.root / "figs").mkdir() or ws.root / "figs")
         and ["plot", ws.run], ("figures", "symbolic link")),
    Case("eval-partial-is-a-link", lambda ws: _link(ws.run / "eval.partial", (ws.root / "p").mkdir() or ws.root / "p")
         and evaluate(ws), ("eval.partial", "symbolic link")),
    Case("eval-partial-lock-is-a-link", lambda ws: _link(ws.run / "eval.partial" / ".lock", _outside(ws))
         and evaluate(ws), (".lock", "symbolic link")),
    Case("eval-json-is-a-link", lambda ws: _link(ws.run / "eval.json", _outside(ws, "e.json")) and evaluate(ws),
         ("eval.json", "symbolic link")),
]


def _two_epochs(ws) -> Path:
    """Resume the 1-epoch run to 2 epochs (its config.json and checkpoints then say 2 epochs done)."""
    assert cli("train", "--out", ws.run, "--resume", "--epochs", "2", "--quiet") == 0
    return ws.run


@pytest.mark.parametrize("case", [c.param() for c in CLI_CASES])
def test_cli_bad_input(case: Case, tmp_path, trained, capsys, monkeypatch, no_hang):
    ws = Workspace(tmp_path, trained)
    for key, value in (case.env or {}).items():
        monkeypatch.setenv(key, value)
    argv = case.argv(ws)
    before = snapshot(tmp_path)
    capsys.readouterr()
    code = cli(*argv)
    out, err = capsys.readouterr()
    line = error_line(err)
    assert code == 2, f"exit {code}: {err[:2000]}"
    assert line.startswith(f"varinf {argv[0]}: error: "), line[:2000]
    assert len(line) <= MAX_LINE, f"an error line of {len(line)} characters: {line[:300]}..."
    for needle in case.needles:
        assert str(ws.root if needle is None else needle) in line, f"{needle!r} not named in: {line}"
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before, "an existing file changed"
    new = set(after) - set(before)
    assert new == set(), f"created {sorted(new)}"


# ---------------------------------------------------------------------------------------------- Python API

def _vae_and_q(x):
    from varinf.models import VAE, VAEConfig
    torch.manual_seed(0)
    model = VAE(VAEConfig(data_dim=x.shape[1], latent_dim=2, hidden=(8,)))
    return model, model.q(*model.encode(x))


def _sgvb_b(x=None, **kw):
    x = torch.from_numpy(digits01()) if x is None else x
    model, q = _vae_and_q(x)
    return varinf.sgvb_b(model, q, x, **kw)


def _classical(name):
    from varinf.classical._sklearn_checks import check_instances
    return next(e for e in check_instances() if type(e).__name__ == name)


def _fit(name, X):
    est = _classical(name)
    if name == "BayesianLogLinear":
        return est.fit(X, np.arange(X.shape[0]) % 2)
    return est.fit(X)


def _gauss(n=30, d=3):
    return np.random.default_rng(0).normal(size=(n, d))


def _univariate_or(name, X):
    return X[:, :1] if name == "UnivariateGaussianCAVI" else X[:, :3] if name == "MeanFieldLatentFactor" else X


CLASSICAL = ["GaussianMixture", "BayesianGaussianMixture", "SparseCoding", "FactorialHMM", "BayesianLogLinear",
             "MeanFieldLatentFactor", "UnivariateGaussianCAVI"]


@dataclass
class ApiCase:
    id: str
    call: Callable[[Path], object]
    error: type[BaseException]
    needles: tuple[str, ...]
    xfail: str | None = None

    param = Case.param


API_CASES = [
    ApiCase("train-dict", lambda d: varinf.train({"epochs": 1}, d / "r"), ConfigError, ("TrainConfig", "dict")),
    ApiCase("train-out-is-a-file", lambda d: varinf.train(varinf.make_config(epochs=1), _write(d / "f", "x")),
            ConfigError, ("f", "file")),
    ApiCase("make_config-unknown", lambda d: varinf.make_config(colour="red"), ConfigError, ("colour",)),
    ApiCase("make_config-wrong-type", lambda d: varinf.make_config(latent_dim="x"), ConfigError,
            ("latent_dim", "'x'")),
    ApiCase("make_config-hidden-none-list", lambda d: varinf.make_config(hidden=[None]), ConfigError,
            ("hidden", "None")),
    ApiCase("TrainConfig-unknown-keyword", lambda d: varinf.TrainConfig(colour="red"), TypeError, ("colour",)),
    ApiCase("sgvb_b-num_samples-negative", lambda d: _sgvb_b(num_samples=-1), ConfigError, ("num_samples", "-1")),
    ApiCase("sgvb_b-num_samples-zero", lambda d: _sgvb_b(num_samples=0), ConfigError, ("num_samples", "0")),
    ApiCase("sgvb_b-num_samples-float", lambda d: _sgvb_b(num_samples=1.5), ConfigError, ("num_samples", "1.5")),
    ApiCase("sgvb_a-num_samples-bool", lambda d: varinf.sgvb_a(*_vae_and_q(torch.from_numpy(digits01())),
                                                               torch.from_numpy(digits01()), num_samples=True),
            ConfigError, ("num_samples", "True")),
    ApiCase("iwae-num_samples-zero", lambda d: varinf.iwae_bound(*_vae_and_q(torch.from_numpy(digits01())),
                                                                 torch.from_numpy(digits01()), num_samples=0),
            ConfigError, ("num_samples", "0")),
    ApiCase("sgvb_b-data-0..255", lambda d: _sgvb_b(torch.from_numpy(digits01() * 255)), DataError,
            ("255", "[0, 1]")),
    ApiCase("evaluate_model-nll_samples-zero", lambda d: varinf.evaluate_model(
        _vae_and_q(torch.from_numpy(digits01()))[0], torch.from_numpy(digits01()), nll_samples=0),
        ConfigError, ("nll_samples", "0")),
    ApiCase("load_model-missing-dir", lambda d: varinf.load_model(d / "nope"), CheckpointError, ("nope",)),
    ApiCase("load_dataset-unknown", lambda d: varinf.load_dataset("cifar"), DatasetNotFoundError, ("cifar",)),
    ApiCase("check_data-ragged", lambda d: varinf.data.check_data([[0, 1], [1]]), DataError, ("data",)),
    ApiCase("check_data-strings", lambda d: varinf.data.check_data(np.array([["a"]])), DataError, ("<U1",)),
    ApiCase("check_data-complex-tensor", lambda d: varinf.data.check_data(torch.ones(2, 2, dtype=torch.complex64)),
            DataError, ("complex",)),
    ApiCase("iterate_batches-zero", lambda d: list(varinf.data.iterate_batches(torch.ones(4, 2), 0)), DataError,
            ("batch_size", "0")),
    ApiCase("Dataset-1d-split", lambda d: varinf.Dataset("mine", train=torch.ones(5)), DataError,
            ("mine", "train")),
    ApiCase("classical-n_components-zero", lambda d: __import__("varinf.classical", fromlist=["x"]).GaussianMixture(
        n_components=0).fit(_gauss()), ConfigError, ("n_components", "0")),
    ApiCase("classical-nan", lambda d: _fit("GaussianMixture", np.where(np.eye(30, 3) > 0, np.nan, _gauss())),
            DataError, ("NaN",)),
    ApiCase("classical-empty", lambda d: _fit("GaussianMixture", np.zeros((0, 3))), DataError, ("0",)),
    ApiCase("classical-strings", lambda d: _fit("GaussianMixture", np.array([["a", "b"]] * 5)), DataError,
            ("numeric",)),
    *[ApiCase(f"classical-{name}-complex", lambda d, n=name: _fit(n, _univariate_or(n, _gauss()) * (1 + 1j)),
              DataError, ("complex",)) for name in CLASSICAL],
    *[ApiCase(f"classical-{name}-sparse", lambda d, n=name: _fit(n, sp.csr_matrix(_univariate_or(n, _gauss()))),
              DataError, ("sparse",)) for name in CLASSICAL],
]


@pytest.mark.parametrize("case", [c.param() for c in API_CASES])
def test_api_bad_input(case: ApiCase, tmp_path):
    before = snapshot(tmp_path)
    with pytest.raises(case.error) as err:
        case.call(tmp_path)
    message = str(err.value)
    assert "\n" not in message.strip(), message
    if case.error is not TypeError:
        assert isinstance(err.value, VarinfError) or case.error is not VarinfError
    for needle in case.needles:
        assert needle in message, f"{needle!r} not named in: {message}"
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before


# ---------------------------------------------------------------------------------------------- run directory

def _plant(run: Path, outside: Path) -> list[Path]:
    """Files a user keeps in a run directory that look like varinf's (stale weights, temporaries) and links to
    files outside it; returns their paths."""
    from safetensors.torch import save as save_bytes
    foreign = save_bytes({"w": torch.ones(3)})                          # a real safetensors file, not varinf's
    files = {
        "model-000001.safetensors": foreign, "last-000009.safetensors": b"user bytes", "notes.md": b"my notes",
        ".notes.txt.abcd1234.tmp": b"editor swap", ".config.json.abcd1234.tmp": b"{}", ".metrics.jsonl.x1y2z3w4.tmp": b"",
        "checkpoints/model-000001.safetensors": foreign, "checkpoints/best-000099.safetensors": foreign,
        "checkpoints/last-000001.safetensors.bak": b"backup", "checkpoints/.last.json.abcd1234.tmp": b"{",
        "checkpoints/.best-000002.safetensors.abcd1234.tmp": foreign, "checkpoints/mine.json": b"{}",
        "figures/mine.png": b"\x89PNG mine", "eval.partial/notes.txt": b"mine",
        "eval.partial/0-0-deadbeef.safetensors": foreign,
    }
    planted = []
    for name, data in files.items():
        path = run / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        planted.append(path)
    links = {"link.txt": "a.txt", "checkpoints/best-000050.safetensors": "b.safetensors",
             "checkpoints/.last.json.abcdefgh.tmp": "c.tmp", "figures/extra.png": "d.png",
             "eval.partial/1-0-cafebabe.safetensors": "b.safetensors"}
    outside.mkdir(exist_ok=True)
    for name, target in links.items():
        (outside / target).write_bytes(f"outside file {target}".encode())
        (run / name).symlink_to(outside / target)
        planted.append(run / name)
    return planted


def _states(paths) -> dict[str, str]:
    return {str(p): _state(p) for p in paths}


def test_no_command_changes_a_file_varinf_did_not_write(tmp_path, trained, capsys):
    """Every command, failing and succeeding, on run directories full of look-alike user files and links to
    files outside: every planted file, every link and every outside file is byte-identical afterwards."""
    outside = tmp_path / "outside"
    run, new = tmp_path / "run", tmp_path / "new"
    shutil.copytree(trained, run)
    new.mkdir()
    planted = _plant(run, outside) + _plant(new, outside)
    nan_data = tmp_path / "nan.npy"
    np.save(nan_data, np.where(np.eye(20, 64) > 0, np.nan, digits01()))
    before = {**_states(planted), **snapshot(outside)}
    commands = [  # (argv, exit status)
        (["train", *FAST, "--dataset", nan_data, "--out", new], 2),          # fails its first check
        (["train", *FAST, "--out", new, "--resume"], 2),                     # nothing to resume
        (["train", *FAST, "--out", new], 0),
        (["train", *FAST, "--out", new], 2),                                 # already holds a run
        (["train", "--out", run, "--resume", "--epochs", "2", "--quiet"], 0),
        (["train", "--out", run, "--resume", "--latent-dim", "3", "--quiet"], 2),
        (["eval", run, "--nll-samples", "3", "--subset", "20", "--quiet"], 0),
        (["eval", run, "--nll-samples", "3", "--subset", "20", "--refine-steps", "1", "--quiet",
          "--output", run / "refined.json"], 0),
        (["eval", run, "--nll-samples", "0", "--quiet"], 2),
        (["eval", new, "--nll-samples", "3", "--subset", "20", "--quiet"], 0),
        (["plot", run], 0),
        (["plot", new, "--checkpoint", "last"], 0),
        (["plot", run, "--seed", "-1"], 2),
        (["train", "--out", run, "--resume", "--epochs", "3", "--quiet"], 0),
    ]
    for argv, status in commands:
        assert cli(*argv) == status, (argv, capsys.readouterr().err)
        after = {**_states(planted), **snapshot(outside)}
        assert after == before, f"{argv} changed {[k for k in before if after.get(k) != before[k]]}"
    assert read_checkpoint(run / "checkpoints", "last")[1]["epoch"] == 2
    assert json.loads((run / "eval.json").read_text())["test_points"] == 20
