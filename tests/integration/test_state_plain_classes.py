"""Plain user classes in state through real crashes, and a value no serializer stores failing once.

- The seeds' plain ``SensorReading`` (no registration, no dataclass) kept in keyed value, list and
  map state on hashmap and RocksDB: a worker slot is SIGKILLed mid-run and the output is checked
  to be exactly that of a failure-free run (``jobs/sensor_state.py``).
- A ``fractions.Fraction`` in ValueState: the job fails once, with exit code 2 and one line naming
  the state, the type and the fix, instead of restarting forever (``jobs/unserializable_state.py``).
- ``examples/sensors.py``, the seeds' CompleteCheckpointingExample as written (its plain
  ``SensorReading`` in window state on RocksDB), runs unchanged through a worker kill.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from streamjob.worker.testing import LocalJob, read_committed, run_cli
from tests.integration.jobs import sensor_state
from tests.integration.jobs.support import job_path, stop_with_savepoint

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "sensors.py")
BACKENDS = {"hashmap": [], "rocksdb": ["rocksdb=1"]}
UNSERIALIZABLE = {**BACKENDS, "hashmap-incremental": ["incremental=1"]}


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_sensor_readings_in_value_list_and_map_state_survive_a_worker_kill(tmp_path: Path, backend: str) -> None:
    out = (tmp_path / "out").as_uri()
    count, keys = 3000, 10
    with LocalJob(
        job_path("sensor_state.py"),
        f"out={out}",
        f"count={count}",
        f"keys={keys}",
        "rate=400",
        *BACKENDS[backend],
        checkpoint_dir=(tmp_path / "chk").as_uri(),
    ) as job:
        job.wait_for_checkpoints(3)
        assert job.job()["state"] == "RUNNING", job.describe()
        killed = job.kill_worker(1)
        info = job.wait_for_running(restarts=1)
        assert killed not in job.worker_pids()
        assert info["restored_from"] is not None and "/chk-" in info["restored_from"], info
        assert job.wait(timeout=180) == 0, job.describe()
    rows = read_committed(out)
    assert sensor_state.check(rows, count, keys) is None, sensor_state.check(rows, count, keys)
    assert len(rows) == count


@pytest.mark.parametrize("backend", sorted(UNSERIALIZABLE))
def test_a_state_value_no_serializer_stores_fails_the_job_once_with_the_fix(tmp_path: Path, backend: str) -> None:
    started = time.monotonic()
    result = run_cli(
        "run",
        "--rest-port",
        "0",
        "--checkpoint-dir",
        (tmp_path / "chk").as_uri(),
        job_path("unserializable_state.py"),
        f"out={(tmp_path / 'out').as_uri()}",
        *UNSERIALIZABLE[backend],
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    failed = [line for line in result.stderr.splitlines() if "job FAILED:" in line]
    assert len(failed) == 1, result.stderr
    line = failed[0]
    assert "restarting in" not in result.stderr, "a value no serializer stores must not be retried"
    assert "operator 'ratios'" in line and "state 'ratio'" in line, line
    assert "cannot store a value of type fractions.Fraction" in line, line
    assert "fix: " in line and "serializer=PickleSerializer()" in line, line
    assert time.monotonic() - started < 90


_WINDOW = re.compile(r"^(\d+> )?Sensor (sensor-[12]) average: (\d+\.\d\d) \(based on (\d+) readings\)$")
_CHECKPOINT = re.compile(r"^Checkpoint taken at sequence number: (\d+)$")


def test_the_seed_sensor_example_runs_unchanged_through_a_worker_kill(tmp_path: Path) -> None:
    """Its readings are random and its windows on the wall clock, so the check is on every line's form.

    What must hold: only the seed's three kinds of lines; both sensors' averages within [0, 100]
    over at least one reading; windows fire before and after the kill; each of the two source
    subtasks prints "Restoring from checkpoint" exactly once, after the kill; the restarted job
    completes checkpoints of its window state (plain ``SensorReading`` objects on RocksDB).
    """
    with LocalJob(EXAMPLE, parallelism=2, checkpoint_dir=(tmp_path / "chk").as_uri()) as job:
        job.wait_for_checkpoints(2, timeout=120)
        job.poll("a window result", lambda: any(_WINDOW.match(line) for line in job.stdout_lines), timeout=60)
        before = len(job.stdout_lines)
        assert not any("Restoring" in line for line in job.stdout_lines)
        killed = job.kill_worker(1)
        info = job.wait_for_running(restarts=1, timeout=120)
        assert killed not in job.worker_pids()
        assert info["restored_from"] is not None, info
        done = job.checkpoints()["counts"]["completed"]
        job.wait_for_checkpoints(done + 2, timeout=120)
        job.poll(
            "a window result after the restore",
            lambda: any(_WINDOW.match(line) for line in job.stdout_lines[before:]),
            timeout=60,
        )
        job.cancel()
        lines = list(job.stdout_lines)
    assert "Traceback" not in job.output()
    assert lines.count("Restoring from checkpoint") == 2, lines
    assert lines.index("Restoring from checkpoint") >= before, lines
    sensors = set()
    for line in lines:
        window, checkpoint = _WINDOW.match(line), _CHECKPOINT.match(line)
        assert window or checkpoint or line == "Restoring from checkpoint", f"unexpected line {line!r}"
        if window:
            sensors.add(window.group(2))
            assert 0.0 <= float(window.group(3)) <= 100.0 and int(window.group(4)) >= 1, line
    assert sensors == {"sensor-1", "sensor-2"}, lines


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_window_contents_take_the_job_wide_internal_state_serializer(tmp_path: Path, backend: str) -> None:
    """Fractions in windows: refused once with the fix by default; checkpointed with PickleSerializer set."""
    started = time.monotonic()
    result = run_cli(
        "run",
        "--rest-port",
        "0",
        "--checkpoint-dir",
        (tmp_path / "refused").as_uri(),
        job_path("window_values.py"),
        *BACKENDS[backend],
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    failed = [line for line in result.stderr.splitlines() if "job FAILED:" in line]
    assert len(failed) == 1 and "restarting in" not in result.stderr, result.stderr
    assert "fractions.Fraction" in failed[0] and "env.set_internal_state_serializer(PickleSerializer())" in failed[0]
    assert time.monotonic() - started < 90

    with LocalJob(
        job_path("window_values.py"), "pickle=1", *BACKENDS[backend], checkpoint_dir=(tmp_path / "chk").as_uri()
    ) as job:
        job.wait_for_checkpoints(3)
        job.poll("window results", lambda: len(job.stdout_lines) >= 3, timeout=60)
        info = job.job()
        job.cancel()
    assert info["attempt"] == 0, job.describe()
    for line in job.stdout_lines:
        key, count, total = line.split(" ")
        assert key in {"0", "1", "2"} and int(count) >= 1 and total.replace("/", "").isdigit(), line


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_sensor_readings_in_state_rescale_from_a_savepoint_2_to_1(tmp_path: Path, backend: str) -> None:
    """Stop-with-savepoint at p=2, restore at p=1: together the two runs' output is exactly one failure-free run's."""
    out = (tmp_path / "out").as_uri()
    count, keys = 3000, 10
    args = [f"out={out}", f"count={count}", f"keys={keys}", "rate=400", *BACKENDS[backend]]
    checkpoints = (tmp_path / "chk").as_uri()
    with LocalJob(job_path("sensor_state.py"), *args, checkpoint_dir=checkpoints) as job:
        job.wait_for_checkpoints(3)
        savepoint = stop_with_savepoint(job)
        assert job.wait() == 0, job.describe()
    with LocalJob(
        job_path("sensor_state.py"), *args, parallelism=1, restore=savepoint, checkpoint_dir=checkpoints
    ) as job:
        assert job.wait(timeout=180) == 0, job.describe()
    rows = read_committed(out)
    assert sensor_state.check(rows, count, keys) is None, sensor_state.check(rows, count, keys)
    assert len(rows) == count
