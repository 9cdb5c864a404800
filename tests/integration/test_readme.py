"""README's quickstart is itself run: the first command of its first ``bash`` block must succeed.

The command is read from README.md (not repeated here), so the test follows the README. For a
``make`` command with the virtualenv already installed, the install prerequisite is marked old
(``make -o .venv/.installed``): the test runs the quickstart's own recipe without reinstalling the
environment it runs in (the install itself runs first in every ``make`` target of CI).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]


def quickstart_command() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "README.md has no ```bash code block"
    first = next(line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#"))
    return shlex.split(first.split("#", 1)[0])


def test_readme_quickstart_is_make_demo() -> None:
    assert quickstart_command() == ["make", "demo"]


def test_readme_quickstart_runs_and_verifies_the_exact_output() -> None:
    command = quickstart_command()
    if command[0] == "make" and (REPO / ".venv" / ".installed").exists():
        command = [command[0], "-o", ".venv/.installed", *command[1:]]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=280, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert re.search(r"demo: killing worker process \d+ with SIGKILL", output), output[-4000:]
    assert re.search(r"attempt 1 running, restored from checkpoint \d+", output), output[-4000:]
    assert re.search(r"demo OK: [\d,]+ committed outputs, every user's counts 1\.\.n exactly once", output), output[
        -4000:
    ]
