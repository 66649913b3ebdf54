"""How often a 2-process ``torchrun -m varinf train`` launch dies at exit, and whether gloo's threads outlive the group.

    python benchmarks/torchrun_exit.py --launches 30
    PYTHONPATH=/path/to/older/checkout/src python benchmarks/torchrun_exit.py --launches 30   # another version

Each launch trains one epoch of a tiny VAE on the digits with 2 gloo processes × 1 thread and must
exit 0; a launch that fails is counted with the first line that says why (gloo's exit race shows as
"terminate called without an active exception", SIGABRT). Then one launch of a script that leaves
the process group (``varinf.distributed.init_from_env`` / ``shutdown``) after building an optimizer prints how many gloo threads are
left (0 when destroy_process_group joined them, which is what rules the race out).
Measured results: docs/RESULTS.md §14.1.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = '''
import os, torch
from varinf.distributed import init_from_env, shutdown
init_from_env("cpu")
torch.optim.Adam([torch.nn.Parameter(torch.ones(2))])           # imports torch._dynamo, as training does
torch.distributed.barrier()
shutdown()
left = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
print("gloo threads left:", sum("gloo" in n for n in left))
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], cwd: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(free_port()), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--launches", type=int, default=30)
    args = ap.parse_args()
    import varinf
    print(f"varinf from {Path(varinf.__file__).parent}")
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.launches):
            done = launch(["-m", "varinf", "train", "--dataset", "digits", "--epochs", "1", "--hidden", "16",
                           "--latent-dim", "4", "--threads", "1", "--quiet", "--out", f"run{i}"], tmp)
            if done.returncode != 0:
                why = [ln for ln in done.stderr.splitlines() if "terminate called" in ln or "Error" in ln]
                failed.append(why[0] if why else f"exit {done.returncode}")
        Path(tmp, "probe.py").write_text(PROBE)
        probe = launch(["probe.py"], tmp)
    print(f"failed launches: {len(failed)} / {args.launches}")
    for why in failed:
        print("  ", why)
    print("after leaving the group:", " | ".join(ln for ln in probe.stdout.splitlines() if "gloo" in ln)
          or f"probe failed: {probe.stderr[-300:]}")


if __name__ == "__main__":
    main()
