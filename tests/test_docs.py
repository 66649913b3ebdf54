"""The documentation site builds in strict mode, its generated pages match the code and the README, and
what a reader sees is rendered: no Sphinx roles, raw TeX, raw Markdown or unparsed docstring sections in
the built HTML, and formulas typeset by a MathJax shipped inside the site (no network)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
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


# ---------------------------------------------------------------- what a reader sees in the built HTML

SKIPPED = {"code", "pre", "script", "style", "textarea", "svg"}   # shown as written, or not text at all
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
NUMPY_SECTIONS = ("Parameters", "Attributes", "Returns", "Raises", "Yields", "Warns", "Other Parameters")
RAW = [(r":(?:class|func|meth|attr|mod|data|exc|obj|ref|py:\w+):", "Sphinx role"),
       (r"\\\(|\\\[|\$\$|\\(?:frac|mathbb|mathcal|sum|log|theta|mid|text)\b", "raw TeX outside a formula"),
       (r"(?m)^\s*\|.*\|\s*$", "table row not rendered as a table"),
       (r"\*\*\S|`|\]\(|\]\[", "raw Markdown (emphasis, code or link)"),
       (r"-{6,}|={6,}", "section or table underline"),
       (r"(?m)^[ \t]*[-*+] \S", "list item run into the paragraph above")]


class _Visible(HTMLParser):
    """The text a reader sees, outside code, scripts and formulas (elements of class ``arithmatex``), with
    a placeholder where those stood; each paragraph's text; the titles of collapsible blocks."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[bool] = []          # per open element: is it skipped?
        self.text: list[str] = []
        self.paragraphs: list[str] = []
        self.open_paragraphs: list[list[str]] = []
        self.summaries: list[str] = []
        self.in_summary = False

    def handle_starttag(self, tag, attrs):
        if tag in VOID:
            return
        skip = tag in SKIPPED or "arithmatex" in (dict(attrs).get("class") or "").split()
        if skip and not any(self.stack):
            self.text.append("\u2423")
            if self.open_paragraphs:
                self.open_paragraphs[-1].append("\u2423")
        if tag == "p":
            self.open_paragraphs.append([])
        self.in_summary = tag == "summary" or self.in_summary
        self.stack.append(skip)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if self.stack:
            self.stack.pop()
        if tag == "p" and self.open_paragraphs:
            self.paragraphs.append("".join(self.open_paragraphs.pop()).strip())
        if tag == "summary":
            self.in_summary = False

    def handle_data(self, data):
        if any(self.stack):
            return
        self.text.append(data)
        if self.open_paragraphs:
            self.open_paragraphs[-1].append(data)
        if self.in_summary:
            self.summaries.append(data.strip())


def render_problems(page_html: str) -> list[str]:
    """What a reader would see unrendered on a page: one line per problem, with its context."""
    page = _Visible()
    page.feed(page_html)
    text = "".join(page.text)
    found = [f"{what}: {text[max(0, m.start() - 50):m.end() + 30]!r}"
             for pattern, what in RAW for m in re.finditer(pattern, text)]
    found += [f"aligned lines run together in a paragraph: {para[max(0, m.start() - 50):m.end() + 30]!r}"
              for para in page.paragraphs for m in re.finditer(r"\n {4,}\S|\S {4,}\S", para)]
    found += [f"docstring section not parsed (shown as a note): {title!r}"
              for title in page.summaries if title.startswith(NUMPY_SECTIONS)]
    return found


@pytest.mark.parametrize("page, expected", [
    ("<p>see :class:<code>Foo</code></p>", "Sphinx role"),
    ("<p>the bound \\(\\log p(x)\\) is</p>", "raw TeX"),
    ("<p>one\n| a | b |\n|---|---|\n| 1 | 2 |</p>", "table row"),
    ("<p>a **bold** word</p>", "raw Markdown"),
    ("<p>Parameters\n----------\nx : int</p>", "underline"),
    ("<p>a paragraph\n- an item that should have been a list</p>", "list item"),
    ("<p>Symbols:\n    x : data,      shape (B, D)</p>", "aligned lines"),
    ("<details><summary>Attributes (after <code>fit</code>)</summary><p>a_ : int</p></details>", "not parsed"),
])
def test_render_check_names_each_kind_of_unrendered_text(page, expected):
    problems = render_problems(page)
    assert problems and all(expected in p for p in problems), problems


def test_render_check_passes_rendered_markup():
    page = ('<p>see <a href="x.html"><code>Foo</code></a>, the bound <span class="arithmatex">\\(\\log p(x)\\)'
            '</span> and</p><div class="arithmatex">\\[ \\frac{1}{k} \\]</div><table><tr><td>a</td></tr></table>'
            '<pre><code>| raw | is | fine | in code |\n--------</code></pre><ul><li>an item</li></ul>'
            '<details><summary>Note</summary><p>x</p></details>')
    assert render_problems(page) == []


def test_every_built_page_is_rendered(site):
    problems = [f"{page.relative_to(site)}: {p}" for page in sorted(site.rglob("*.html"))
                for p in render_problems(page.read_text(encoding="utf-8"))]
    assert not problems, f"{len(problems)} unrendered spots, e.g.\n" + "\n".join(problems[:10])


def test_api_docstrings_are_parsed_as_numpy_style(site):
    """Parameters/Attributes sections become tables (mkdocstrings' numpy parser), not run-on text."""
    page = (site / "api" / "classical.html").read_text(encoding="utf-8")
    assert page.count('doc-section-title">Parameters:') >= 3
    assert page.count('doc-section-title">Attributes:') >= 3


#: SHA-256 of es5/tex-svg-full.js in the npm package mathjax@3.2.2 (docs/javascripts/vendor/mathjax/).
MATHJAX_SHA256 = "a4354ff94fd868aea0cc6eaaa79a57fda0588646fc46ee3700a349ee0a11cbe6"


def test_formulas_are_typeset_by_the_mathjax_inside_the_site(site):
    """Every page loads only scripts and styles of the site itself; pages with formulas load MathJax's
    SVG build (all TeX extensions, no web fonts) from the site, byte for byte the published 3.2.2."""
    vendored = site / "javascripts" / "vendor" / "mathjax" / "tex-svg-full.js"
    assert hashlib.sha256(vendored.read_bytes()).hexdigest() == MATHJAX_SHA256
    pages_with_math = 0
    for page in site.rglob("*.html"):
        html_text = page.read_text(encoding="utf-8")
        remote = re.findall(r'<(?:script|link|img)\b[^>]*\b(?:src|href)="((?:https?:)?//[^"]*)"', html_text)
        assert not remote, f"{page.relative_to(site)} loads {remote}"
        if 'class="arithmatex"' in html_text:
            pages_with_math += 1
            scripts = re.findall(r'<script src="([^"]*)"', html_text)
            assert any(s.endswith("javascripts/vendor/mathjax/tex-svg-full.js") for s in scripts), page
            assert any(s.endswith("javascripts/mathjax.js") for s in scripts), page
    assert pages_with_math >= 3
