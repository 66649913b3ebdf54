"""Rank r of the 2-process runs of tests/test_distributed.py, launched there with torchrun.

    python -m torch.distributed.run --nproc_per_node 2 tests/ddp_worker.py ROOT

Trains every run of ``RUNS`` into ROOT/<name>-2, resumes ROOT/resume (its first epoch ran in one
process) and evaluates ROOT/vae-1 into ROOT/eval-2.json (resuming the evaluation that one process
began and was killed in) and, in one batch with its k draws split, into ROOT/eval-k-2.json, all in one
process group; then prints
the names of the gloo threads left after leaving the group (none: destroy_process_group joined them).
"""

import os
import sys
from pathlib import Path

import torch

from test_distributed import EVAL, EVAL_K, RUNS
from varinf.config import make_config
from varinf.distributed import process_group
from varinf.evaluate import evaluate_run
from varinf.training import train


def gloo_threads() -> list[str]:
    """Names of this process's threads that belong to gloo (Linux: /proc/self/task/*/comm)."""
    names = []
    for task in os.listdir("/proc/self/task"):
        try:
            names.append(open(f"/proc/self/task/{task}/comm").read().strip())
        except OSError:                       # the thread ended while we listed
            pass
    return sorted(n for n in names if "gloo" in n)

if __name__ == "__main__":
    root = Path(sys.argv[1])
    torch.set_num_threads(1)
    with process_group("cpu"):
        for name, settings in RUNS.items():
            train(make_config(**settings), root / f"{name}-2", progress=False)
        train(make_config(**RUNS["vae"]), root / "resume", resume=True, progress=False)
        evaluate_run(root / "vae-1", **EVAL, output=root / "eval-2.json")       # resumes a 1-process one
        evaluate_run(root / "vae-1", **EVAL_K, output=root / "eval-k-2.json")   # one batch: k split instead
    print(f"rank {os.environ['RANK']}: gloo threads after leaving the group: {gloo_threads()}", flush=True)
