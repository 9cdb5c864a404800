"""Every ``streamjob run`` flag and ``-D`` value out of range is one error line and exit 2, never a traceback.

``-D checkpoint.interval_ms=99999999999999999999`` used to crash the JobMaster with ``OverflowError``
(a timer that long cannot be scheduled) and ``--checkpoint-interval 0s`` was silently ignored.
Each case runs the real command; argparse prints the usage above its one ``error`` line, and
problems found when the job config is validated print the ``error:`` line alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streamjob.worker.testing import run_cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
JOB = str(Path(__file__).resolve().parents[2] / "examples" / "balance.py")
HUGE = "99999999999999999999"

CASES = [
    (["-D", f"checkpoint.interval_ms={HUGE}"], "too long a duration"),
    (["-D", f"checkpoint.timeout_ms={HUGE}"], "too long a duration"),
    (["-D", f"checkpoint.min_pause_ms={HUGE}h"], "too long a duration"),
    (["-D", f"checkpoint.aligned_timeout_ms={'9' * 400}"], "too long a duration"),
    (["-D", "checkpoint.timeout_ms=1e999"], "is not a duration"),
    (["-D", f"checkpoint.retained={HUGE}"], "checkpoint.retained: Input should be less than or equal to"),
    (["-D", f"checkpoint.max_concurrent={HUGE}"], "checkpoint.max_concurrent: Input should be less than"),
    (["-D", f"checkpoint.tolerable_failures={HUGE}"], "checkpoint.tolerable_failures: Input should be less"),
    (["-D", "checkpoint.retained=1e999"], "checkpoint.retained: Input should be a finite number"),
    (["-D", "checkpoint.interval_ms=0"], "checkpoint.interval_ms: Input should be greater than or equal to 10"),
    (["--checkpoint-interval", "0s"], "shorter than the shortest checkpoint interval, 10ms"),
    (["--checkpoint-interval", "0"], "shorter than the shortest checkpoint interval, 10ms"),
    (["--checkpoint-interval", f"{HUGE}h"], "too long a duration"),
    (["--parallelism", HUGE], "must be from 1 to 32768"),
    (["--parallelism", "0"], "must be from 1 to 32768"),
    (["--max-parallelism", HUGE], "must be from 1 to 32768"),
    (["--rest-port", HUGE], "must be from 0 to 65535"),
    (["--rest-port", "-1"], "must be from 0 to 65535"),
    (["--standby-slots", "-1"], "--standby-slots: must be from 0 to 100"),
    (["--standby-slots", "101"], "--standby-slots: must be from 0 to 100"),
]


@pytest.mark.parametrize(("flags", "message"), CASES, ids=[" ".join(c[0])[:40] for c in CASES])
def test_out_of_range_values_are_one_error_line(flags: list[str], message: str, tmp_path: Path) -> None:
    result = run_cli("run", "--checkpoint-dir", str(tmp_path), *flags, JOB, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert message in errors[0], result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) <= 3, f"the usage (two lines) and one error line at most:\n{result.stderr}"
