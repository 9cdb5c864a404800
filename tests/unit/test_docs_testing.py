"""``docs/testing.md`` stays true: its first example is run as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def test_the_crash_and_resume_example_runs_as_written() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    namespace: dict[str, Any] = {"__name__": "docs_testing_example"}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)
    namespace["test_a_crash_loses_and_repeats_nothing"]()
