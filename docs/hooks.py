"""MkDocs hook: pages whose text is generated at build time from the code and the README.

* ``<!-- varinf:cli-reference -->`` in a page becomes the reference of every ``varinf`` subcommand,
  rendered from the argparse parser :func:`varinf.cli.build_parser` (usage, help, every option);
* ``<!-- varinf:readme-setup -->`` becomes the README's set-up commands (its first two ``bash`` blocks,
  copied verbatim with the sentence before each).

Nothing is copied by hand, so the site cannot drift from ``varinf --help`` or the README.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI_MARKER = "<!-- varinf:cli-reference -->"
SETUP_MARKER = "<!-- varinf:readme-setup -->"


def _escape(text: str) -> str:
    """Help text as literal Markdown: no emphasis, links, HTML or math from *, _, [, <, $."""
    text = html.escape(text, quote=False)
    return re.sub(r"([\\`*_\[\]$|])", r"\\\1", text)


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, sub-parser) of every subcommand, in the order they were added."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            out += [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return out


def _option_line(action: argparse.Action, formatter: argparse.HelpFormatter) -> str:
    """One Markdown list item: the flags with their metavar, the help, choices and default."""
    if action.option_strings:
        value = "" if action.nargs == 0 else " " + formatter._format_args(action, action.dest.upper())
        name = ", ".join(f"`{flag}{value}`" for flag in action.option_strings)
    else:
        name = f"`{formatter._format_args(action, action.dest.upper())}` (positional)"
    notes = []
    if action.help and action.help is not argparse.SUPPRESS:
        notes.append(_escape(formatter._expand_help(action)))
    if action.required and action.option_strings:
        notes.append("**required**")
    if action.option_strings and action.nargs != 0 and action.default not in (None, argparse.SUPPRESS):
        notes.append(f"default: `{action.default}`")
    return f"- {name}" + (" — " + "; ".join(notes) if notes else "")


def cli_reference() -> str:
    """Markdown reference of ``varinf`` and each subcommand, from the live parser."""
    if str(ROOT / "src") not in sys.path:
        sys.path.insert(0, str(ROOT / "src"))
    from varinf.cli import build_parser

    parser = build_parser()
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "76"   # usage wrapped the same on every machine, to fit a page's code box
    try:
        return _render(parser)
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns


def _render(parser: argparse.ArgumentParser) -> str:
    """The top-level usage, then per subcommand: its help, its usage and one list item per option."""
    lines = [f"`{parser.prog}`: {_escape(parser.description or '')}", "", "```text", parser.format_usage().strip(),
             "```", ""]
    for name, summary, sub in _subcommands(parser):
        formatter = sub._get_formatter()
        lines += [f"## varinf {name}", "", _escape(summary[:1].upper() + summary[1:]) + ".", "", "```text",
                  sub.format_usage().strip(), "```", ""]
        lines += [_option_line(a, formatter) for a in sub._actions if not isinstance(a, argparse._HelpAction)]
        lines.append("")
    return "\n".join(lines)


def readme_setup() -> str:
    """The README's first two ``bash`` blocks, each after the paragraph that introduces it, verbatim."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = list(re.finditer(r"(?ms)^([^\n`#][^\n]*(?:\n[^\n`]+)*)\n\n(```bash\n.*?\n```)", text))[:2]
    if len(blocks) < 2:
        raise RuntimeError("README.md: expected two ```bash set-up blocks near the top")
    return "\n\n".join(f"{m.group(1)}\n\n{m.group(2)}" for m in blocks)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    if SETUP_MARKER in markdown:
        markdown = markdown.replace(SETUP_MARKER, readme_setup())
    return markdown
