"""What the README and docs tests share: the fenced blocks of a Markdown page, its command lines, and the
substitution of small epoch and sample counts that keeps running them fast (tests/test_readme.py,
tests/test_docs_commands.py)."""

from __future__ import annotations

import re

SMALL = {"--epochs": "1", "--nll-samples": "5", "--subset": "20", "--refine-steps": "2"}
# keyword arguments of the Python blocks: the same small counts
SMALL_KEYWORDS = {"epochs": "2", "nll_samples": "5"}


def blocks(text: str, lang: str) -> list[str]:
    """The fenced ```lang blocks of a Markdown text, stripped."""
    return [b.strip() for b in re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)]


def command_lines(block: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = [line.split(" #")[0].strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def shrink(args: list[str]) -> list[str]:
    """The same command with small epoch/sample counts (and a resumed run one epoch longer)."""
    out = list(args)
    for i, a in enumerate(out[:-1]):
        if a in SMALL:
            out[i + 1] = "2" if (a == "--epochs" and "--resume" in out) else SMALL[a]
        if a == "--refine-sweep":
            out[i + 1] = "0,1,2"
    if out[0] == "eval" and "--subset" not in out:
        out += ["--subset", SMALL["--subset"], "--nll-samples", SMALL["--nll-samples"]]
    if out[0] == "train" and "--epochs" not in out:
        out += ["--epochs", "1"]
    return out


def shrink_python(code: str) -> str:
    """A Python block with ``epochs=N`` and ``nll_samples=N`` keyword arguments set to small counts."""
    for name, value in SMALL_KEYWORDS.items():
        code = re.sub(rf"\b{name}=\d+", f"{name}={value}", code)
    return code
