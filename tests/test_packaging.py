"""What the package says about itself is true: one version, a license, type information, a changelog."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import varinf

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_version_is_written_once_and_the_metadata_reads_it():
    project = PYPROJECT["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "varinf.__version__"}
    assert importlib.metadata.version("varinf") == varinf.__version__
    written = [f for f in (ROOT / "src").rglob("*.py") if re.search(r"^__version__\s*=", f.read_text(), re.M)]
    assert written == [ROOT / "src" / "varinf" / "__init__.py"]


def test_the_changelog_names_the_current_version_first():
    headings = re.findall(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), re.M)
    assert headings and headings[0] == varinf.__version__, headings[:3]


def test_the_license_file_is_the_license_the_metadata_declares():
    assert PYPROJECT["project"]["license"] == "MIT" and PYPROJECT["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text


def test_the_package_ships_its_type_information():
    assert (ROOT / "src" / "varinf" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["varinf"]
