"""The README's two commands are the contract with a new user; CI must run the second verbatim."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    commands = []
    for block in blocks[:2]:
        lines = [ln for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        commands.append(" ".join(ln.rstrip("\\").strip() for ln in lines))
    return commands


def test_readme_starts_with_two_commands_and_ci_runs_the_test_one():
    main_cmd, test_cmd = readme_commands()
    assert "pytest" in test_cmd and "pip install" in test_cmd and "pip install" in main_cmd
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci
