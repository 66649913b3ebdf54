"""README.md opens with the two set-up commands; .ci/run runs the second one verbatim."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    return [b.strip() for b in blocks[:2]]


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
