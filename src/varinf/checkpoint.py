"""Atomic, verifiable checkpoints: weights in safetensors, everything else in JSON.

A checkpoint named ``NAME`` in a directory is two files:

    NAME.safetensors   model parameters (``model.*``) and optimizer tensors (``optim.*``)
    NAME.json          config, epoch, metrics, RNG state, optimizer hyper-parameters, and
                       the SHA-256 of NAME.safetensors

Each file is written to a temporary file in the same directory, flushed, fsync'd and
renamed over the old one (``os.replace`` is atomic on POSIX), then the directory is
fsync'd. The weights go first and the JSON, which names the weights' hash, last: a kill
at any moment leaves either the old checkpoint or the new one, and a weights file that
does not match its JSON is detected on load rather than silently used.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save as save_bytes

from varinf.errors import CheckpointError

FORMAT_VERSION = 1


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename, fsync directory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; give the file the mode of the one it replaces, else rw-r--r--.
        os.fchmod(fd, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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


def save_checkpoint(directory: str | os.PathLike, name: str, *, model: torch.nn.Module,
                    optimizers: dict[str, torch.optim.Optimizer], meta: dict) -> Path:
    """Write ``directory/name.{safetensors,json}`` atomically; returns the JSON path.

    ``optimizers`` maps a name (e.g. ``"model"``) to an optimizer; several are allowed
    for methods that update encoder and decoder separately.
    """
    directory = Path(directory)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optim_meta = {}
    for oname, opt in optimizers.items():
        t, m = _optimizer_split(opt.state_dict())
        tensors.update({f"{oname}/{k}": v for k, v in t.items()})
        optim_meta[oname] = m
    blob = save_bytes(tensors)
    atomic_write_bytes(directory / f"{name}.safetensors", blob)
    record = dict(meta)
    record.update(format_version=FORMAT_VERSION, optimizers=optim_meta,
                  weights_sha256=hashlib.sha256(blob).hexdigest(), weights_file=f"{name}.safetensors")
    json_path = directory / f"{name}.json"
    atomic_write_json(json_path, record)
    return json_path


def read_checkpoint(directory: str | os.PathLike, name: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Read and verify a checkpoint: (tensors, meta). Raises CheckpointError naming the problem."""
    directory = Path(directory)
    json_path, weights_path = directory / f"{name}.json", directory / f"{name}.safetensors"
    if not json_path.exists():
        raise CheckpointError(f"no checkpoint {json_path}: train first (varinf train --out {directory.parent})")
    try:
        meta = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint metadata {json_path} is corrupt ({exc}); "
                              "delete the run directory or restore it from a copy") from exc
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{json_path} is not a varinf checkpoint of format {FORMAT_VERSION}")
    if not weights_path.exists():
        raise CheckpointError(f"checkpoint weights {weights_path} are missing")
    blob = weights_path.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != meta.get("weights_sha256"):
        raise CheckpointError(f"checkpoint weights {weights_path} are corrupt or do not belong to {json_path.name} "
                              f"(sha256 {digest[:12]}…, expected {str(meta.get('weights_sha256'))[:12]}…)")
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint weights {weights_path} cannot be read: {exc}") from exc
    return tensors, meta


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
