"""README.md is true line by line: it opens with the two set-up commands (.ci/run runs the second one
verbatim), and every other command block runs as written, one after another, in a fresh directory (with
small epoch and sample counts substituted so that the suite stays fast)."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import doc_commands
from doc_commands import shrink, shrink_python
from gloo_launch import check_launch, torchrun

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return doc_commands.blocks(README, lang)


def readme_commands() -> list[str]:
    return blocks("bash")[:2]


def test_readme_starts_with_main_job_and_test_command():
    main_job, tests = readme_commands()
    assert "varinf train" in main_job and "--dataset digits" in main_job
    assert "varinf eval" in main_job and "varinf plot" in main_job
    assert "pytest" in tests
    assert "-c constraints.txt" in main_job and "-c constraints.txt" in tests
    assert "torch==2.13.0" in (REPO / "constraints.txt").read_text()


def test_ci_runs_the_readme_test_command():
    _, tests = readme_commands()
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert tests in ci


def test_every_cli_line_of_the_readme_runs(tmp_path, monkeypatch):
    from varinf.cli import main
    lines = [line.split("#")[0].strip() for block in blocks("bash")[2:] for line in block.splitlines()]
    commands = [shlex.split(line)[1:] for line in lines if line.startswith(".venv/bin/varinf ")]
    assert len(commands) >= 7
    (tmp_path / "configs").symlink_to(REPO / "configs")
    monkeypatch.chdir(tmp_path)
    for args in commands:
        assert main(shrink(args) + (["--threads", "1"] if args[0] == "train" else [])) == 0, args


def test_every_torchrun_line_of_the_readme_runs(tmp_path):
    lines = [line.split("#")[0].strip() for block in blocks("bash")[2:] for line in block.splitlines()]
    commands = [shlex.split(line)[1:] for line in lines if line.startswith(".venv/bin/torchrun ")]
    assert len(commands) >= 3
    for args in commands:
        at = args.index("varinf") + 1                      # torchrun's own flags, then -m varinf ARGS
        done = torchrun([*args[:at], *shrink(args[at:])], env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=tmp_path)
        check_launch(done, f"README line: torchrun {shlex.join(args)}")


def test_python_blocks_of_the_readme_run_as_written(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for i, code in enumerate(blocks("python")):
        if "my_model" in code:                 # the one-line illustration of the keyword arguments
            continue
        code = shrink_python(code)
        for _ in range(2):                     # twice: a block must not depend on what it left behind
            done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                                  text=True, timeout=300)
            assert done.returncode == 0, (i, done.stderr[-2000:])


@pytest.mark.parametrize("script", ["examples/custom_model.py"])
def test_example_scripts_named_in_the_readme_exist(script):
    assert script in README and (REPO / script).exists()
