"""Launch the tests' process groups with torchrun, the launcher users run, and read a failure.

A launch that fails is either a bug of varinf's or a machine that cannot host a gloo group of two
processes at all (seen as a C++ abort inside gloo, before any varinf code runs). :func:`check_launch`
tells the two apart with a probe that runs nothing but a 2-process all-reduce
(``tests/gloo_probe.py``): when the probe fails too, the test is skipped with the probe's own
error; when the probe passes, the test fails with the tail of the workers' output.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_env(**extra: str) -> dict[str, str]:
    """The test process's environment, one thread per process, ``src`` importable."""
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, **extra}


def torchrun(args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run ARGS`` (what the ``torchrun`` script runs), output captured."""
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", *args], env=env or worker_env(),
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _tail(text: str, chars: int = 2500) -> str:
    """The lines that say why first (aborts, signals, Python errors), then the end of the output."""
    keys = ("terminate called", "what():", "Signal", "signal", "Error", "error:")
    why = [line for line in text.splitlines() if any(k in line for k in keys)][-8:]
    return "\n".join(why) + "\n--- last lines ---\n" + text[-chars:]


@functools.cache
def gloo_unavailable() -> str | None:
    """None when two gloo processes can all-reduce on this machine, else why not (the probe's output)."""
    done = torchrun(["--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
                     str(HERE / "gloo_probe.py")], timeout=120)
    return None if done.returncode == 0 else _tail(done.stdout + done.stderr, 800)


def check_launch(done: subprocess.CompletedProcess, what: str) -> None:
    """Pass if the launch succeeded; skip if this machine cannot host a gloo group; fail otherwise."""
    if done.returncode == 0:
        return
    reason = gloo_unavailable()
    if reason is not None:
        pytest.skip(f"{what}: this machine cannot run a 2-process gloo group; the bare all-reduce probe "
                    f"(tests/gloo_probe.py) failed too:\n{reason}")
    pytest.fail(f"{what} failed (exit {done.returncode}) while the bare gloo probe passes:\n"
                f"{_tail(done.stdout + done.stderr)}", pytrace=False)
