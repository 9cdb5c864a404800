"""No module of the two packages grows past ``MAX_LINES`` (issue 11): split it by responsibility instead.

The check reads every ``.py`` file under ``worker/`` and ``operator/``; the failure names each file
over the limit with its line count, so the fix is obvious.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("worker", "operator")
MAX_LINES = 600


def oversized(root: Path, limit: int = MAX_LINES) -> list[str]:
    """``path: N lines`` for each module under ``root``'s packages longer than ``limit`` lines."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > limit:
                found.append(f"{path.relative_to(root)}: {lines} lines")
    return found


def test_no_module_is_longer_than_600_lines() -> None:
    too_long = oversized(ROOT)
    assert not too_long, f"modules over {MAX_LINES} lines (split them by responsibility): " + "; ".join(too_long)


def test_the_check_names_an_oversized_module(tmp_path: Path) -> None:
    (tmp_path / "worker" / "runtime").mkdir(parents=True)
    (tmp_path / "operator").mkdir()
    (tmp_path / "worker" / "runtime" / "big.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (tmp_path / "worker" / "runtime" / "fits.py").write_text("x = 1\n" * MAX_LINES)
    (tmp_path / "operator" / "small.py").write_text('"""Small."""\n')
    assert oversized(tmp_path) == [f"worker/runtime/big.py: {MAX_LINES + 1} lines"]
