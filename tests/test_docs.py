"""The documentation site builds in strict mode, and its generated pages match the code and the README."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """`mkdocs build --strict` into a temporary directory: a broken link or reference fails the build."""
    pytest.importorskip("mkdocs")
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                           "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def _text(html_file: Path) -> str:
    """The page's visible text, entities decoded."""
    import html
    return html.unescape(re.sub(r"<[^>]+>", "", html_file.read_text(encoding="utf-8")))


def test_cli_reference_lists_every_subcommand_and_option(site):
    from varinf.cli import build_parser
    import argparse

    page = _text(site / "cli.html")
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, subparser in sub.choices.items():
        assert f"varinf {name}" in page
        for action in subparser._actions:
            for flag in action.option_strings:
                assert flag in page, f"varinf {name} {flag} missing from the CLI reference"


def test_quick_start_has_the_readme_setup_commands_verbatim(site):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)[:2]
    assert len(blocks) == 2
    page = _text(site / "index.html")
    for block in blocks:
        assert block in page


def test_api_reference_renders_each_module(site):
    for module in ("objectives", "models", "refinement", "infer", "classical", "data", "evaluate", "training",
                   "enumeration", "errors"):
        page = (site / "api" / f"{module}.html").read_text(encoding="utf-8")
        assert page.count('class="doc doc-heading"') >= 2, f"varinf.{module}: no members rendered"


SCANNED = ["src", "docs", "README.md", "configs", "benchmarks", "examples"]


def test_source_documents_are_cited_by_author_not_number():
    pattern = re.compile(r"seed 00[0-4]", re.IGNORECASE)
    hits = []
    for entry in SCANNED:
        path = ROOT / entry
        files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()
                                               and not any(p.endswith(".egg-info") for p in f.parts)]
        for f in files:
            if f.suffix in {".png", ".npz", ".npy", ".safetensors", ".pyc"}:
                continue
            for n, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if pattern.search(line):
                    hits.append(f"{f.relative_to(ROOT)}:{n}")
    assert not hits, f"{len(hits)} lines cite a source document by number, e.g. {hits[:5]}"
