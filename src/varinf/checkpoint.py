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
directory calls (``varinf.training.train`` under ``varinf.runlock.run_lock``).

Format 1 checkpoints (``NAME.safetensors`` rewritten in place beside ``NAME.json``), written by
earlier versions of varinf, are still read; the next save replaces them by the layout above.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes, save as save_bytes

from varinf.errors import CheckpointError

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
#: How often a reader re-reads NAME.json when a writer deleted the weights it named meanwhile.
READ_ATTEMPTS = 3
_VERSIONED = re.compile(r"^(?P<name>.+)-(?P<number>\d{6,})\.safetensors$")
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # tempfile.mkstemp names made by atomic_write_bytes


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


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename, fsync directory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            # mkstemp creates 0600; give the file the mode of the one it replaces, else rw-r--r--.
            os.fchmod(fd, path.stat().st_mode & 0o777 if path.exists() else 0o644)
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


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


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


# The training state a record of varinf.training holds: name -> (check, what is allowed). A record
# with a "config" is a training checkpoint and must hold all of them; any of them present is checked.
TRAINING_FIELDS = {
    "config": (lambda v: isinstance(v, dict), "a table of settings"),
    "model": (lambda v: isinstance(v, dict), "a table of architecture settings"),
    "epoch": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "history": (lambda v: isinstance(v, list) and all(isinstance(r, dict) for r in v),
                "a list of per-epoch records"),
    "best_valid_elbo": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    "best_epoch": (_is_int, "an integer"),
    "bad_epochs": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "rng_state": (_is_base64, "base64 text of a random generator state"),
}


def _check_training_state(meta: dict, json_path: Path) -> None:
    """Raise CheckpointError naming the first field of ``meta`` that is missing or of the wrong kind."""
    missing = [key for key in TRAINING_FIELDS if key not in meta] if "config" in meta else []
    if missing:
        raise CheckpointError(f"checkpoint metadata {json_path} lacks {missing}; restore the run directory "
                              "from a copy")
    for key, (ok, allowed) in TRAINING_FIELDS.items():
        if key in meta and not ok(meta[key]):
            shown = repr(meta[key])
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise CheckpointError(f"checkpoint metadata {json_path}: {key} must be {allowed}, got {shown}; "
                                  "restore the run directory from a copy")


def _load_record(json_path: Path) -> dict | None:
    """The parsed NAME.json, or None when it does not exist. Raises CheckpointError when unusable."""
    try:
        text = json_path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        meta = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint metadata {json_path} is corrupt ({exc}); "
                              "delete the run directory or restore it from a copy") from exc
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
        raise CheckpointError(f"{json_path} names the weights file {name!r}; expected a .safetensors file "
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
                    optimizers: dict[str, torch.optim.Optimizer], meta: dict) -> Path:
    """Save ``directory/name`` (see the module docstring for the commit protocol); returns the JSON path.

    ``optimizers`` maps a name (e.g. ``"model"``) to an optimizer; several are allowed
    for methods that update encoder and decoder separately. One writer per directory
    (``varinf.runlock``); any number of concurrent readers.
    """
    directory = Path(directory)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optim_meta = {}
    for oname, opt in optimizers.items():
        t, m = _optimizer_split(opt.state_dict())
        tensors.update({f"{oname}/{k}": v for k, v in t.items()})
        optim_meta[oname] = m
    blob = save_bytes(tensors)
    previous = _committed_weights(directory, name)
    match = _VERSIONED.match(previous or "")
    weights_file = f"{name}-{int(match['number']) + 1 if match else 1:06d}.safetensors"
    atomic_write_bytes(directory / weights_file, blob)                          # (1) new immutable weights
    record = dict(meta)
    record.update(format_version=FORMAT_VERSION, optimizers=optim_meta,
                  weights_sha256=hashlib.sha256(blob).hexdigest(), weights_file=weights_file)
    json_path = directory / f"{name}.json"
    atomic_write_json(json_path, record)                                        # (2) commit
    if previous is not None and previous != weights_file:
        _unlink(directory / previous)                                           # (3) superseded weights
    return json_path


def read_checkpoint(directory: str | os.PathLike, name: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Read and verify a checkpoint: (tensors, meta). Raises CheckpointError naming the problem.

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
            blob = weights_path.read_bytes()
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
            raise CheckpointError(f"checkpoint weights {weights_path} cannot be read: {exc}") from exc
        return tensors, meta
    raise CheckpointError(f"checkpoint weights {weights_path} named by {json_path} are missing; "
                          "restore the run directory from a copy")


def remove_stale_files(*directories: str | os.PathLike) -> list[Path]:
    """Delete what killed writers left in ``directories``; returns the paths removed.

    Removes temporary files of ``atomic_write_bytes`` and weights files that no NAME.json commits
    to: numbered ones never committed or superseded but not yet deleted, and a format-1
    ``NAME.safetensors`` once NAME.json names another file. Leaves everything of a NAME whose
    record is unreadable. Only the single writer of a run directory may call this (a concurrent
    save's temporary files would be removed); readers never do.
    """
    removed = []
    for directory in map(Path, directories):
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            match = _VERSIONED.match(path.name)
            if _TEMPORARY.match(path.name):
                stale = True
            elif match:
                json_path = directory / f"{match['name']}.json"
                stale = not json_path.exists() or _committed_weights(directory, match["name"]) not in (None, path.name)
            elif path.suffix == ".safetensors":
                committed = _committed_weights(directory, path.stem)
                stale = committed is not None and committed != path.name
            else:
                stale = False
            if stale and path.is_file():
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
