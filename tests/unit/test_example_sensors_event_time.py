"""The event-time sensor example (``examples/sensors_event_time.py``): its pipeline on a deterministic input,
with exact outputs derived by hand, under the in-process test kit.

One sensor, one reading per batch, reading ``n`` measured at ``measured_at(0, n)`` with value ``n``:
timestamps 0, 1000, 2000, 3000, 2500 (n=4, 1.5 s out of order), 5000, -9000 (n=6, 15 s late), 7000,
8000, 7500, 10000, 11000, 12000, -2000 (n=13), 12500, 15000, 16000, 17000, 18000, 17500, 5000 (n=20).
The watermark trails the largest timestamp by 2 s + 1 ms. -9000 arrives at watermark 2999: its window
[-10000, 0) ended (cleanup -1 + 1000 lateness = 999 <= 2999): late. 12000 (watermark 9999) fires
[0, 10000) with n = 0..5, 7, 8, 9 (mean 39 / 9 = 4.33). -2000 is late the same way; 15000 (watermark
12999) drops [0, 10000) (cleanup 10999), so 5000 (n=20) is late too. The end of input fires
[10000, 20000) with n = 10, 11, 12, 14..19 (mean 132 / 9 = 14.67).
"""

from __future__ import annotations

from typing import Any

import pytest

from examples.sensors_event_time import LATE, SensorReading, measured_at, windowed_averages
from streamjob.worker.api import StreamExecutionEnvironment
from streamjob.worker.testing import TestingSink, TestingSource, run_in_process

pytestmark = pytest.mark.unit


def test_event_time_sensor_windows_and_late_readings_are_exact() -> None:
    readings = [SensorReading("s1", measured_at(0, n), float(n)) for n in range(21)]
    out: list[Any] = []
    late: list[Any] = []
    env = StreamExecutionEnvironment.get_execution_environment()
    env.register_type(SensorReading)
    results = windowed_averages(env.from_source(TestingSource(readings)).uid("src"))
    results.add_sink(TestingSink(out)).uid("out")
    results.get_side_output(LATE).map(lambda r: (r.sensor_id, r.timestamp, r.value)).add_sink(TestingSink(late)).uid(
        "late"
    )
    run_in_process(env, parallelism=1, module="examples.sensors_event_time")
    assert out == [
        "Sensor s1 window 0: average 4.33 (based on 9 readings)",
        "Sensor s1 window 10000: average 14.67 (based on 9 readings)",
    ]
    assert late == [("s1", -9000, 6.0), ("s1", -2000, 13.0), ("s1", 5000, 20.0)]
