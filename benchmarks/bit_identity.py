"""Digests of every number 14 short digits runs produce, to show that a change keeps them bit for bit.

Each run (one per method: vae, iwae, gbvi, hvi, nvil, wake-sleep, avi, mpvi, stvi, vimco, arm, gumbel, and
two-layer disarm and avi SBNs) trains one or two epochs of a small network on the digits data, one thread,
then is evaluated with k = 50. Per run the JSON holds a SHA-256 prefix of every tensor of the last
checkpoint (weights and optimizer state), the checkpoint's optimizer record (each group's hyperparameters
and parameter indices), every ``metrics.jsonl`` value but the seconds, and the
evaluation's numbers. Run it on two versions of the package (the older one from a worktree, through
PYTHONPATH) and compare the files:

    git worktree add /tmp/varinf-old OLD_COMMIT
    PYTHONPATH=/tmp/varinf-old/src python benchmarks/bit_identity.py --out runs/bits-old.json
    python benchmarks/bit_identity.py --out runs/bits-new.json
    cmp runs/bits-old.json runs/bits-new.json && echo bit-identical

``--only NAME ...`` runs a subset. About a minute on one core.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path

import torch

from varinf import training
from varinf.checkpoint import read_checkpoint
from varinf.config import make_config
from varinf.evaluate import evaluate_run

SMALL = dict(dataset="digits", hidden=(32,), latent_dim=8, batch_size=100, threads=1, patience=0, seed=3)
SBN = dict(SMALL, model="sbn")
RUNS = {
    "vae": dict(SMALL, method="vae", epochs=2),
    "iwae": dict(SMALL, method="iwae", epochs=1),
    "gbvi": dict(SMALL, method="gbvi", epochs=1, refine_steps=3, refine_samples=4, samples=2, lr=3e-3),
    "hvi": dict(SMALL, method="hvi", epochs=1),
    "nvil": dict(SBN, method="nvil", epochs=2),
    "wake-sleep": dict(SBN, method="wake-sleep", epochs=1),
    "avi": dict(SBN, method="avi", epochs=1, refine_steps=3, refine_samples=4, samples=2),
    "mpvi": dict(SBN, method="mpvi", epochs=1, refine_steps=3),
    "stvi": dict(SBN, method="stvi", epochs=1, refine_steps=3),
    "vimco": dict(SBN, method="vimco", epochs=1),
    "arm": dict(SBN, method="arm", epochs=1),
    "disarm-deep": dict(SBN, method="disarm", latent_dim=(8, 4), hidden=(), epochs=1),
    "gumbel": dict(SBN, method="gumbel", epochs=1),
    "avi-deep": dict(SBN, method="avi", latent_dim=(8, 4), hidden=(), epochs=1, refine_steps=2, refine_samples=3,
                     samples=2),
}


def digest(run_dir: Path) -> dict:
    """The run's numbers: checkpoint tensors hashed, optimizer record, metrics without timings, evaluation (k = 50)."""
    tensors, meta = read_checkpoint(run_dir / "checkpoints", "last")
    h = hashlib.sha256()
    for key in sorted(tensors):
        h.update(key.encode())
        h.update(tensors[key].detach().cpu().numpy().tobytes())
    metrics = [{k: v for k, v in json.loads(line).items() if k != "seconds"}
               for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    ev = evaluate_run(run_dir, nll_samples=50, write=False)
    ev = {k: v for k, v in ev.items() if isinstance(v, (int, float)) and "second" not in k}
    return {"weights": h.hexdigest()[:16], "optimizers": meta["optimizers"], "metrics": metrics, "eval": ev}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="JSON file for the digests")
    ap.add_argument("--only", nargs="+", choices=sorted(RUNS), help="these runs only")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, settings in RUNS.items():
            if args.only and name not in args.only:
                continue
            training.train(make_config(**settings), Path(tmp) / name, progress=False)
            out[name] = digest(Path(tmp) / name)
            print(name, out[name]["weights"], flush=True)
    Path(args.out).write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
