"""Crash-safe, verifiable checkpoints: weights in safetensors, everything else in JSON.

A checkpoint named ``NAME`` in a directory is

    NAME-000012.safetensors   model parameters (``model.*``) and optimizer tensors (``optim.*``); one
                              immutable file per save, numbered 1, 2, 3, ... per NAME
    NAME.json                 the commit record: config, epoch, metrics, RNG state, optimizer
                              hyper-parameters, the name of the weights file and its SHA-256

A save (1) writes the new weights under a new number (temporary file, fsync, rename, fsync of
the directory), (2) commits by replacing NAME.json in one atomic rename (same steps), and only
then (3) deletes the weights file the old NAME.json named. A kill at any instant therefore leaves
NAME.json naming complete, fsync'd weights: the old checkpoint before the rename of step 2, the new
one after it. A reader reads NAME.json and then the weights it names; if a writer deleted them in
between (step 3), the reader reads NAME.json again and finds the new version. Weights files are
never rewritten in place, so a reader never sees weights of one save beside the record of another.
What a kill leaves behind (temporary files, a numbered weights file never committed, a superseded
one not yet deleted) is removed by ``remove_stale_files``, which only the single writer of a run
directory calls (``varinf.training.train`` under ``varinf.runlock.run_lock``, after every input
was checked). It removes only what it can prove this run wrote: every file a save writes carries
the run's *owner* token (``run_id`` in ``config.json``) -- temporary files in their name
(``.NAME.json.<owner>.<8 random>.tmp``), weights files in their safetensors metadata, and the
record names the weights it superseded -- so a user's look-alike file (``model-000001.safetensors``,
``.notes.txt.abcd1234.tmp``) is never touched. Nothing is written, locked or deleted through a
symbolic link (``varinf.runfiles``).

Format 1 checkpoints (``NAME.safetensors`` rewritten in place beside ``NAME.json``), written by
earlier versions of varinf, are still read; the next save replaces them by the layout above.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes, save as save_bytes

from varinf.errors import CheckpointError
from varinf.runfiles import is_regular_file, open_regular, read_regular, refuse_link, real_dir, shown

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
#: How often a reader re-reads NAME.json when a writer deleted the weights it named meanwhile.
READ_ATTEMPTS = 3
_VERSIONED = re.compile(r"^(?P<name>.+)-(?P<number>\d{6,})\.safetensors$")
_OWNER = re.compile(r"^[0-9a-f]{8,64}$")
#: Largest checkpoint record (NAME.json) read: its history grows by ~150 bytes an epoch.
MAX_RECORD_BYTES = 64 << 20
_MAX_HEADER_BYTES = 64 << 20          # a safetensors header (JSON) read to find a weights file's owner


def _temporary(owner: str) -> re.Pattern:
    """Names of atomic_write_bytes's temporary files written for ``owner`` (tempfile.mkstemp names)."""
    return re.compile(rf"^\..+\.{re.escape(owner)}\.[a-z0-9_]{{8}}\.tmp$")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path: str | os.PathLike) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def atomic_write_bytes(path: str | os.PathLike, data: bytes, owner: str | None = None) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename, fsync directory).

    A symbolic link at ``path`` is refused (CheckpointError), never followed or replaced. The
    temporary file is named ``.<name>.<owner>.<8 random>.tmp`` when ``owner`` is given (the token
    ``remove_stale_files`` recognises), else ``.<name>.<8 random>.tmp``.
    """
    path = Path(path)
    if owner is not None and not _OWNER.match(owner):
        raise ValueError(f"owner must be 8-64 lowercase hex digits, got {owner!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    refuse_link(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{owner + '.' if owner else ''}", suffix=".tmp", dir=path.parent)
    try:
        try:
            # mkstemp creates 0600; give the file the mode of the one it replaces, else rw-r--r--.
            old = os.lstat(path).st_mode & 0o777 if os.path.lexists(path) else 0o644
            os.fchmod(fd, old)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str, owner: str | None = None) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), owner)


def atomic_write_json(path: str | os.PathLike, obj: Any, owner: str | None = None) -> None:
    """``obj`` as JSON; a non-finite float is a ValueError (JSON has no NaN or infinity)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n", owner)


def encode_rng_state(state: torch.Tensor) -> str:
    """A generator's ByteTensor state as base64 text, for the JSON side of a checkpoint."""
    return base64.b64encode(state.cpu().numpy().tobytes()).decode("ascii")


def decode_rng_state(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()


def _optimizer_split(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into tensors (for safetensors) and plain JSON."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for idx, st in state_dict["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"optim.{idx}.{key}"] = val.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = val
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _optimizer_join(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, val in tensors.items():
        if not name.startswith("optim."):
            continue
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = val
    for idx, sc in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(sc)
    return {"state": state, "param_groups": meta["param_groups"]}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_base64(value) -> bool:
    try:
        return isinstance(value, str) and bool(base64.b64decode(value, validate=True))
    except ValueError:
        return False


def _is_finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# The training state a record of varinf.training holds: name -> (check, what is allowed). A record
# with a "config" is a training checkpoint and must hold all of them; any of them present is checked.
TRAINING_FIELDS = {
    "config": (lambda v: isinstance(v, dict), "a table of settings"),
    "model": (lambda v: isinstance(v, dict), "a table of architecture settings"),
    "epoch": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "history": (lambda v: isinstance(v, list) and all(isinstance(r, dict) for r in v),
                "a list of per-epoch records"),
    "best_valid_elbo": (_is_finite_number, "a finite number"),
    "best_epoch": (_is_int, "an integer"),
    "bad_epochs": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "rng_state": (_is_base64, "base64 text of a random generator state"),
}


def _bad_record(json_path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"checkpoint metadata {json_path}: {what}; restore the run directory from a copy")


def _check_training_state(meta: dict, json_path: Path) -> None:
    """Raise CheckpointError naming the first field of ``meta`` that is missing, of the wrong kind, or
    inconsistent with the others (epoch within the run's epochs, one history record per epoch done,
    the best epoch and its bound among them)."""
    missing = [key for key in TRAINING_FIELDS if key not in meta] if "config" in meta else []
    if missing:
        raise _bad_record(json_path, f"lacks {missing}")
    for key, (ok, allowed) in TRAINING_FIELDS.items():
        if key in meta and not ok(meta[key]):
            raise _bad_record(json_path, f"{key} must be {allowed}, got {shown(meta[key], 40)}")
    if "config" not in meta:
        return
    epoch, history, epochs = meta["epoch"], meta["history"], meta["config"].get("epochs")
    if _is_int(epochs) and epoch >= epochs:
        raise _bad_record(json_path, f"epoch {shown(epoch, 40)} is outside the run's {epochs} epochs (0 to "
                                     f"{epochs - 1})")
    if len(history) != epoch + 1 or any(r.get("epoch") != i + 1 for i, r in enumerate(history)):
        raise _bad_record(json_path, f"history holds {len(history)} records, not the epochs 1 to {epoch + 1} that "
                                     f"epoch {epoch} implies")
    if not all(_is_finite_number(r.get(k)) for r in history for k in ("train_elbo", "valid_elbo")):
        raise _bad_record(json_path, "history holds a bound that is not a finite number")
    best = meta["best_epoch"]
    if not 1 <= best <= epoch + 1 or history[best - 1]["valid_elbo"] != meta["best_valid_elbo"]:
        raise _bad_record(json_path, f"best_epoch {best} and best_valid_elbo {shown(meta['best_valid_elbo'], 40)} "
                                     "do not match the history")
    if meta["bad_epochs"] > epoch + 1 - best:
        raise _bad_record(json_path, f"bad_epochs {meta['bad_epochs']} exceeds the {epoch + 1 - best} epochs since "
                                     f"the best one")


def _load_record(json_path: Path) -> dict | None:
    """The parsed NAME.json, or None when it does not exist. Raises CheckpointError when unusable."""
    try:
        text = read_regular(json_path, MAX_RECORD_BYTES)
    except FileNotFoundError:
        return None
    try:
        meta = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointError(f"checkpoint metadata {json_path} is corrupt ({shown(str(exc), 80)}); "
                              "delete the run directory or restore it from a copy") from None
    if not isinstance(meta, dict) or meta.get("format_version") not in READABLE_FORMATS:
        raise CheckpointError(f"{json_path} is not a varinf checkpoint of format "
                              f"{' or '.join(map(str, READABLE_FORMATS))}")
    _check_training_state(meta, json_path)
    return meta


def _weights_name(meta: dict, json_path: Path) -> str:
    """The weights file a record names: a plain file name beside it (format 1: NAME.safetensors)."""
    name = meta.get("weights_file", json_path.stem + ".safetensors")
    if not isinstance(name, str) or Path(name).name != name or name.startswith(".") \
            or not name.endswith(".safetensors"):
        raise CheckpointError(f"{json_path} names the weights file {shown(name)}; expected a .safetensors file "
                              "in the same directory")
    return name


def _committed_weights(directory: Path, name: str) -> str | None:
    """The weights file that ``directory/name.json`` commits to, or None (no or unreadable record)."""
    json_path = directory / f"{name}.json"
    try:
        meta = _load_record(json_path)
        return None if meta is None else _weights_name(meta, json_path)
    except CheckpointError:
        return None


def save_checkpoint(directory: str | os.PathLike, name: str, *, model: torch.nn.Module,
                    optimizers: dict[str, torch.optim.Optimizer], meta: dict, owner: str | None = None) -> Path:
    """Save ``directory/name`` (see the module docstring for the commit protocol); returns the JSON path.

    ``optimizers`` maps a name (e.g. ``"model"``) to an optimizer; several are allowed
    for methods that update encoder and decoder separately. One writer per directory
    (``varinf.runlock``); any number of concurrent readers. ``owner`` (the run's token) marks
    every file written, so that ``remove_stale_files(directory, owner=owner)`` may remove them.
    ``directory`` must not be a symbolic link.
    """
    directory = real_dir(directory)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optim_meta = {}
    for oname, opt in optimizers.items():
        t, m = _optimizer_split(opt.state_dict())
        tensors.update({f"{oname}/{k}": v for k, v in t.items()})
        optim_meta[oname] = m
    blob = save_bytes(tensors, metadata={"varinf_owner": owner} if owner else None)
    previous = _committed_weights(directory, name)
    match = _VERSIONED.match(previous or "")
    weights_file = f"{name}-{int(match['number']) + 1 if match else 1:06d}.safetensors"
    atomic_write_bytes(directory / weights_file, blob, owner)                   # (1) new immutable weights
    record = dict(meta)
    record.update(format_version=FORMAT_VERSION, optimizers=optim_meta,
                  weights_sha256=hashlib.sha256(blob).hexdigest(), weights_file=weights_file,
                  owner=owner, supersedes=previous)
    json_path = directory / f"{name}.json"
    atomic_write_json(json_path, record, owner)                                 # (2) commit
    if previous is not None and previous != weights_file and is_regular_file(directory / previous):
        _unlink(directory / previous)                                           # (3) superseded weights
    return json_path


def _check_finite(tensors: dict[str, torch.Tensor], weights_path: Path) -> None:
    """CheckpointError naming the first floating-point tensor (weights or optimizer state) with NaN or inf."""
    for key, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"checkpoint weights {weights_path}: {shown(key, 80)} holds NaN or infinite values "
                                  "(a diverged or damaged checkpoint); restore the run directory from a copy")


def read_checkpoint(directory: str | os.PathLike, name: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Read and verify a checkpoint: (tensors, meta). Raises CheckpointError naming the problem.

    Verified: the record's fields and their consistency, the weights' SHA-256, and that every
    floating-point tensor (weights and optimizer state) is finite. Only regular files are read.
    Safe while a writer saves: when the weights named by NAME.json were superseded and deleted
    between reading the record and opening them, the record is read again (READ_ATTEMPTS times).
    """
    directory = Path(directory)
    json_path = directory / f"{name}.json"
    vanished = None
    for _ in range(READ_ATTEMPTS):
        meta = _load_record(json_path)
        if meta is None:
            raise CheckpointError(f"no checkpoint {json_path}: train first (varinf train --out {directory.parent})")
        weights_path = directory / _weights_name(meta, json_path)
        try:
            blob = read_regular(weights_path)
        except FileNotFoundError:
            if vanished == weights_path.name:
                break                                  # the record did not move on: the weights are missing
            vanished = weights_path.name
            continue
        digest = hashlib.sha256(blob).hexdigest()
        if digest != meta.get("weights_sha256"):
            raise CheckpointError(f"checkpoint weights {weights_path} are corrupt or do not belong to "
                                  f"{json_path.name} (sha256 {digest[:12]}…, expected "
                                  f"{str(meta.get('weights_sha256'))[:12]}…)")
        try:
            tensors = load_bytes(blob)
        except (SafetensorError, ValueError) as exc:
            raise CheckpointError(f"checkpoint weights {weights_path} cannot be read: {shown(str(exc), 80)}") from None
        _check_finite(tensors, weights_path)
        return tensors, meta
    raise CheckpointError(f"checkpoint weights {weights_path} named by {json_path} are missing; "
                          "restore the run directory from a copy")


def _weights_owner(path: Path) -> str | None:
    """The ``varinf_owner`` in a safetensors file's header metadata (None if absent or unreadable)."""
    try:
        fd = open_regular(path, follow=False)
    except (OSError, CheckpointError):
        return None
    try:
        head = os.pread(fd, 8, 0)
        size = int.from_bytes(head, "little") if len(head) == 8 else 0
        if not 0 < size <= _MAX_HEADER_BYTES:
            return None
        header = json.loads(os.pread(fd, size, 8))
        owner = header.get("__metadata__", {}).get("varinf_owner")
        return owner if isinstance(owner, str) else None
    except (ValueError, AttributeError, RecursionError, OSError):
        return None
    finally:
        os.close(fd)


def remove_stale_files(*directories: str | os.PathLike, owner: str) -> list[Path]:
    """Delete what killed writers of ``owner`` left in ``directories``; returns the paths removed.

    Removes only regular files this owner provably wrote: its temporary files
    (``.<name>.<owner>.<8 random>.tmp``), numbered weights files that carry its token and that no
    NAME.json commits to (never committed, or superseded but not yet deleted), and a file that
    NAME.json (written by ``owner``) names as superseded. Leaves everything of a NAME whose record
    is unreadable, every file of another owner or of none, and skips a directory that is a
    symbolic link. Only the single writer of a run directory may call this (a concurrent save's
    temporary files would be removed); readers never do.
    """
    removed = []
    temporary = _temporary(owner)
    for directory in map(Path, directories):
        if directory.is_symlink() or not directory.is_dir():
            continue
        records: dict[str, dict | None] = {}

        def record(name: str) -> dict | None:
            if name not in records:
                try:
                    records[name] = _load_record(directory / f"{name}.json")
                except CheckpointError:
                    records[name] = {"unreadable": True}
            return records[name]

        superseded = set()
        for path in directory.glob("*.json"):
            meta = record(path.stem)
            if meta and meta.get("owner") == owner and isinstance(meta.get("supersedes"), str) \
                    and meta["supersedes"] != meta.get("weights_file"):
                superseded.add(meta["supersedes"])
        for path in sorted(directory.iterdir()):
            match = _VERSIONED.match(path.name)
            if temporary.match(path.name) or path.name in superseded:
                stale = True
            elif match:
                meta = record(match["name"])
                stale = (meta is None or ("unreadable" not in meta and meta.get("weights_file") != path.name)) \
                    and _weights_owner(path) == owner
            else:
                stale = False
            if stale and is_regular_file(path):
                _unlink(path)
                removed.append(path)
    return removed


def restore(tensors: dict[str, torch.Tensor], meta: dict, *, model: torch.nn.Module,
            optimizers: dict[str, torch.optim.Optimizer] | None = None) -> None:
    """Load model (and optimizer) state from ``read_checkpoint``'s output, checking shapes."""
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    expected = model.state_dict()
    if set(model_state) != set(expected):
        missing, extra = set(expected) - set(model_state), set(model_state) - set(expected)
        raise CheckpointError("checkpoint was written by a model of another configuration "
                              f"(missing {sorted(missing)[:3]}, unexpected {sorted(extra)[:3]})")
    for key, val in model_state.items():
        if val.shape != expected[key].shape:
            raise CheckpointError(f"checkpoint was written by a model of another configuration: {key} has shape "
                                  f"{tuple(val.shape)}, this model expects {tuple(expected[key].shape)}")
    model.load_state_dict(model_state)
    for oname, opt in (optimizers or {}).items():
        if oname not in meta.get("optimizers", {}):
            raise CheckpointError(f"checkpoint holds no state for optimizer {oname!r}")
        prefix = f"{oname}/"
        sub = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            opt.load_state_dict(_optimizer_join(sub, meta["optimizers"][oname]))
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"optimizer state in checkpoint does not fit this optimizer: {exc}") from exc


def save_figure(fig, path: Path, **savefig) -> Path:
    """Write a matplotlib figure as PNG at ``path`` atomically, never through a symbolic link (the figure's
    name or its directory), and close it (a pyplot figure: varinf's own are plain ``Figure`` objects)."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", **savefig)
    finally:
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path
