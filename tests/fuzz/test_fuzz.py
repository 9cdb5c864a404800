"""The fuzz targets under pytest: the committed corpus replayed, then each target fuzzed for a bounded time.

Replaying (``python -m tests.fuzz.run replay``) is fast and runs every seed and every input a
past finding left in ``tests/fuzz/corpus``: a regression test. Fuzzing runs atheris in a
subprocess per target for ``STREAMJOB_FUZZ_SECONDS`` (60 under CI, else 15) from a fixed seed;
a finding fails the test with the libFuzzer report and the path of the input. A self-test makes
sure the harness reports a target that raises an undocumented error.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

pytestmark = pytest.mark.fuzz

ROOT = Path(__file__).resolve().parents[2]
SECONDS = int(os.environ.get("STREAMJOB_FUZZ_SECONDS", "60" if os.environ.get("CI") == "true" else "15"))


def _atheris() -> None:
    try:
        import atheris  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("atheris is not installed: `make install` (it is in the dev extras)")
        pytest.skip("atheris is not installed (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def import_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory whose only entry is ``tests``: the repository root on sys.path would let its
    ``operator/`` shadow the stdlib module (``streamjob`` itself is installed)."""
    root = tmp_path_factory.mktemp("fuzz-imports")
    (root / "tests").symlink_to(ROOT / "tests")
    return root


def _run(import_root: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(import_root)}
    return subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=import_root,
        check=False,
    )


@pytest.mark.parametrize("target", [t.name for t in TARGETS])
def test_the_corpus_replays_cleanly(target: str, import_root: Path) -> None:
    done = _run(import_root, "replay", target, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    count = int(done.stdout.split("replayed ")[1].split()[0])
    assert count >= 5, f"the corpus of {target} has only {count} inputs"


@pytest.mark.parametrize("target", [t.name for t in TARGETS])
def test_fuzzing_finds_nothing(target: str, tmp_path: Path, import_root: Path) -> None:
    _atheris()
    done = _run(
        import_root, "fuzz", target, "--seconds", str(SECONDS), "--artifacts", str(tmp_path), timeout=SECONDS + 240
    )
    found = sorted(p.name for p in tmp_path.iterdir())
    assert done.returncode == 0 and not found, (
        f"fuzzing {target} found {found} in {tmp_path}; fix it and keep the input in tests/fuzz/corpus/{target}:\n"
        + done.stderr[-6000:]
    )
    assert "Done" in done.stderr and "stat::number_of_executed_units" in done.stderr, done.stderr[-3000:]


def broken_target(data: bytes) -> None:
    """A decoder with a bug: any input starting with b"\\x02" raises an undocumented KeyError."""
    if data[:1] == b"\x02":
        raise KeyError("undocumented")


def test_the_harness_reports_a_target_that_raises_an_undocumented_error(tmp_path: Path, import_root: Path) -> None:
    _atheris()
    done = _run(
        import_root,
        "fuzz",
        "tests.fuzz.test_fuzz:broken_target",
        "--seconds",
        "30",
        "--artifacts",
        str(tmp_path),
        timeout=300,
    )
    assert done.returncode != 0
    crashes = list(tmp_path.glob("crash-*"))
    assert crashes and crashes[0].read_bytes()[:1] == b"\x02", done.stderr[-3000:]
