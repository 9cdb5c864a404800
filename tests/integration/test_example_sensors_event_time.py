"""``examples/sensors_event_time.py`` run as written (``streamjob run``, p=2, real processes), bounded.

Its readings are random, its batching up to the machine, so the check is an exact count that holds
however the records are cut into batches: every reading of a sensor lands either in exactly one
window (whose last firing counts it) or in the late side output, so per sensor the windows' last
counts plus the late readings are exactly the readings sent. At least one reading per sensor is late
(15 s late is later than the 2 s bound and 1 s lateness once the watermark passed its window).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streamjob.worker.testing import LocalJob

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "sensors_event_time.py")
_WINDOW = re.compile(r"Sensor (sensor-\d) window (-?\d+): average (\d+\.\d\d) \(based on (\d+) readings\)")
_LATE = re.compile(r"Late reading: SensorReading\{sensorId='(sensor-\d)', timestamp=(-?\d+), value=")


def test_the_event_time_sensor_example_accounts_for_every_reading(tmp_path: Path) -> None:
    readings = 30
    with LocalJob(
        EXAMPLE, f"readings={readings}", "interval=0.05", parallelism=2, checkpoint_dir=(tmp_path / "chk").as_uri()
    ) as job:
        assert job.wait(timeout=200) == 0, job.describe()
        lines = list(job.stdout_lines)
    last: dict[tuple[str, str], int] = {}
    late: dict[str, int] = {}
    for line in lines:
        if m := _WINDOW.search(line):
            assert 0 <= float(m.group(3)) <= 100, line
            last[(m.group(1), m.group(2))] = int(m.group(4))
        elif m := _LATE.search(line):
            late[m.group(1)] = late.get(m.group(1), 0) + 1
    for sensor in ("sensor-1", "sensor-2"):
        counted = sum(n for (s, _), n in last.items() if s == sensor)
        assert counted + late.get(sensor, 0) == readings, (sensor, last, late, lines)
        assert late.get(sensor, 0) >= 1, (sensor, late, lines)
