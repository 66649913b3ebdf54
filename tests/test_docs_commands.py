"""Every command of docs/*.md and docs/guide/*.md runs as written (small epoch and sample counts
substituted, as tests/test_readme.py does for the README, with the same substitution code in
tests/doc_commands.py). The commands of a page run in order in one fresh directory; its Python blocks run
one after another as one script, as a reader pastes them into one session. The few placeholders a page
leaves to the reader (``x = ...``, "your model and data") are filled in by ``FILL_IN`` below, and the few
lines that are not run are listed in ``NOT_RUN`` with the reason; the test fails when either list no
longer matches the pages."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from doc_commands import SMALL, blocks, command_lines, shrink, shrink_python
from gloo_launch import check_launch, torchrun

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted((REPO / "docs").glob("*.md")) + sorted((REPO / "docs" / "guide").glob("*.md"))

NOT_RUN = {
    "pip install -e '.[docs]'": "installs the package; the README's set-up lines (run by .ci/run) do that",
    "mkdocs serve": "a server that runs until it is stopped",
    "mkdocs build": "the site build is tests/test_docs.py's (mkdocs build --strict)",
}

# What a page leaves to the reader, per page: (text in a Python block, what the test puts there), and bash
# commands run first (a run directory the page assumes exists).
FILL_IN = {
    "own-model.md": {
        "python_prelude": ("import sys; sys.path.insert(0, {examples!r})\n"
                           "from custom_model import GaussianDecoderVAE, digits_grey_levels\n"
                           "_data = digits_grey_levels()\n"
                           "x_train, x_valid, x_test = _data.train, _data.valid, _data.test\n"
                           "model = GaussianDecoderVAE(_data.dim)\n"),
    },
    "refinement.md": {
        "before": ["varinf train --dataset digits --latent-dim 2 --hidden 16 --epochs 1 --out runs/vae-mnist"],
        "python": [("x = ...", "import varinf; _test = varinf.load_dataset(cfg.dataset).split('test'); "
                                "_g = torch.Generator().manual_seed(0); "
                                "x = _test[torch.randperm(_test.shape[0], generator=_g)[:8]]")],
    },
}
# scripts: the arguments that make them short (each script's own flags)
SCRIPT_ARGS = {
    "examples/custom_model.py": ["--epochs", "2", "--refine-steps", "2", "--nll-samples", "5"],
    "benchmarks/paper_table.py": ["--epochs", "1", "--threads", "1"],
    "benchmarks/paper_table.py --table 1": ["--subset", SMALL["--subset"], "--nll-samples", SMALL["--nll-samples"]],
    "examples/classical/bbvi_estimators.py": ["--iters", "50"],
    "examples/classical/factorial_hmm.py": ["--T", "50", "--iters", "5"],
    "examples/classical/latent_factor.py": ["--n", "50", "--ks", "4"],
    "examples/classical/loglinear_wine.py": ["--iters", "100"],
    "examples/classical/sparse_coding_digits.py": ["--atoms", "16"],
}


def page_id(page: Path) -> str:
    return str(page.relative_to(REPO / "docs"))


def tiny_binarized_mnist(data_dir: Path) -> None:
    """A stand-in binarized_mnist.npz of 200/100/100 random rows of the real one, so that a paper-table
    command trains and evaluates in seconds (the real file from $VARINF_DATA_DIR when it is there)."""
    real = Path(os.environ.get("VARINF_DATA_DIR", REPO.parent / "shared" / "data")) / "binarized_mnist.npz"
    rng = np.random.default_rng(0)
    if real.exists():
        with np.load(real) as z:
            arrays = {s: z[s][rng.choice(z[s].shape[0], n, replace=False)]
                      for s, n in (("train", 200), ("valid", 100), ("test", 100))}
    else:
        arrays = {s: (rng.random((n, 784)) < 0.2).astype(np.uint8)
                  for s, n in (("train", 200), ("valid", 100), ("test", 100))}
    data_dir.mkdir()
    np.savez(data_dir / "binarized_mnist.npz", **arrays)


def run_line(line: str, cwd: Path, env: dict) -> None:
    from varinf.cli import main
    args = shlex.split(line)
    if args[0] in (".venv/bin/varinf", "varinf"):
        args = args[1:]
        assert main(shrink(args) + (["--threads", "1"] if args[0] == "train" else [])) == 0, line
        return
    if args[0] in (".venv/bin/torchrun", "torchrun"):
        at = args.index("varinf") + 1                      # torchrun's own flags, then -m varinf ARGS
        done = torchrun([*args[1:at], *shrink(args[at:])], env={**env, "OMP_NUM_THREADS": "1"}, cwd=cwd)
        check_launch(done, f"docs line: {line}")
        return
    assert args[0] in (".venv/bin/python", "python"), f"a docs command this test does not know how to run: {line}"
    script = args[1]
    extra = [a for key, more in SCRIPT_ARGS.items() if " ".join(args[1:]).startswith(key) for a in more]
    for flag in list(extra[::2]):                          # a flag the line sets itself wins
        if flag in args:
            i = extra.index(flag)
            del extra[i:i + 2]
    done = subprocess.run([sys.executable, str(REPO / script), *args[2:], *extra], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (line, done.stderr[-3000:])


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_command_of_the_page_runs(page, tmp_path, monkeypatch):
    text = page.read_text()
    fill = FILL_IN.get(page.name, {})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    lines = [line for block in blocks(text, "bash") for line in command_lines(block)]
    if any("paper_table.py" in line for line in lines):
        tiny_binarized_mnist(tmp_path / "data")
        env["VARINF_DATA_DIR"] = str(tmp_path / "data")
        monkeypatch.setenv("VARINF_DATA_DIR", env["VARINF_DATA_DIR"])
    (tmp_path / "configs").symlink_to(REPO / "configs")
    (tmp_path / "benchmarks").symlink_to(REPO / "benchmarks")
    (tmp_path / "examples").symlink_to(REPO / "examples")
    monkeypatch.chdir(tmp_path)
    for line in fill.get("before", []) + [line for line in lines if line not in NOT_RUN]:
        run_line(line, tmp_path, env)
    code = "\n".join(blocks(text, "python"))
    if not code:
        return
    code = fill.get("python_prelude", "").format(examples=str(REPO / "examples")) + shrink_python(code)
    for placeholder, value in fill.get("python", []):
        assert placeholder in code, (page.name, placeholder)
        code = code.replace(placeholder, value)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, (page.name, done.stderr[-3000:])


def test_the_lines_not_run_are_on_the_pages():
    """NOT_RUN and FILL_IN name only what the pages hold (a stale entry hides nothing)."""
    lines = {line for page in PAGES for block in blocks(page.read_text(), "bash") for line in command_lines(block)}
    assert set(NOT_RUN) <= lines
    assert set(FILL_IN) <= {page.name for page in PAGES}


def test_no_tab_or_control_character_in_the_docs_sources():
    """A TAB or other control character in a Markdown source is a mangled TeX escape (a Python string's
    "\\tilde" turns into TAB + "ilde", "\\beta" into backspace + "eta") or a stray keystroke."""
    bad = [(page_id(page), n, line) for page in PAGES
           for n, line in enumerate(page.read_text().splitlines(), 1)
           if any(ord(c) < 32 or ord(c) == 127 for c in line)]
    assert bad == []
