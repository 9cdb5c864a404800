"""The seeds' plain ``SensorReading`` kept in keyed value, list and map state, with exactly-once output.

Each event ``i`` is ``SensorReading(f"sensor-{i % keys}", i, value(i))``. Per sensor the function
keeps the reading with the highest value (ValueState), every reading (ListState) and the earliest
reading per bucket ``timestamp % 4`` (MapState), all declared with ``SensorReading`` itself as the
type hint, and emits ``[sensor, n, sum of the listed timestamps, best timestamp, [[bucket, timestamp], ...]]``
with ``n`` the number of readings listed. The final state does not depend on the order in which
events of a sensor arrive, so in an exactly-once run every sensor's ``n`` is 1..N exactly once and the
row with ``n == N`` equals ``final_row`` (``check``).

Args (``name=value``): ``out`` (FileSink URI), ``count``, ``keys``, ``rate``, ``rocksdb=1``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from streamjob.worker.api import (
    EmbeddedRocksDBStateBackend,
    KeyedProcessFunction,
    ListStateDescriptor,
    MapStateDescriptor,
    StreamExecutionEnvironment,
    ValueStateDescriptor,
)
from streamjob.worker.api.file_sink import FileSink


class SensorReading:
    """As in the seed: a no-argument constructor and public fields."""

    def __init__(self, sensor_id=None, timestamp=0, value=0.0):  # type: ignore[no-untyped-def]
        self.sensor_id = sensor_id
        self.timestamp = timestamp
        self.value = value


def value_of(i: int) -> float:
    return ((i * 7919) % 1000) / 10


def reading(keys: int):  # type: ignore[no-untyped-def]
    def make(i: int) -> SensorReading:
        return SensorReading(f"sensor-{i % keys}", i, value_of(i))

    return make


def row(
    sensor: str, readings: list[SensorReading], best: SensorReading, buckets: dict[int, SensorReading]
) -> list[Any]:
    return [
        sensor,
        len(readings),
        sum(r.timestamp for r in readings),
        best.timestamp,
        sorted([bucket, r.timestamp] for bucket, r in buckets.items()),
    ]


class Track(KeyedProcessFunction[str, SensorReading, list[Any]]):
    def open(self, runtime_context: Any) -> None:
        self.best = runtime_context.get_state(ValueStateDescriptor("best", SensorReading))
        self.readings = runtime_context.get_list_state(ListStateDescriptor("readings", SensorReading))
        self.earliest = runtime_context.get_map_state(MapStateDescriptor("earliest", int, SensorReading))

    def process_element(self, value: SensorReading, ctx: Any, out: Any) -> None:
        assert type(value) is SensorReading
        best = self.best.value()
        if best is None or (value.value, value.timestamp) > (best.value, best.timestamp):
            best = value
            self.best.update(value)
        bucket = value.timestamp % 4
        first = self.earliest.get(bucket)
        if first is None or value.timestamp < first.timestamp:
            self.earliest.put(bucket, value)
        self.readings.add(value)
        readings = self.readings.get()
        assert all(type(r) is SensorReading for r in readings)
        out.collect(row(value.sensor_id, readings, best, dict(self.earliest.items())))


def build(args: list[str]) -> StreamExecutionEnvironment:
    opts = dict(arg.partition("=")[::2] for arg in args)
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    env.enable_checkpointing(200)
    if opts.get("rocksdb") == "1":
        env.set_state_backend(EmbeddedRocksDBStateBackend())
    keys = int(opts.get("keys", "10"))
    stream = env.from_generator(reading(keys), int(opts.get("count", "3000")), float(opts.get("rate", "500")))
    stream.uid("readings").key_by(lambda r: r.sensor_id).process(Track()).uid("track").add_sink(
        FileSink(opts["out"])
    ).uid("sink")
    return env


def final_row(events: range, keys: int) -> dict[str, list[Any]]:
    """Per sensor, the row emitted for its last reading in a failure-free run over ``events``."""
    by_sensor: dict[str, list[SensorReading]] = defaultdict(list)
    make = reading(keys)
    for i in events:
        by_sensor[f"sensor-{i % keys}"].append(make(i))
    out = {}
    for sensor, readings in by_sensor.items():
        best = max(readings, key=lambda r: (r.value, r.timestamp))
        buckets: dict[int, SensorReading] = {}
        for r in readings:
            if r.timestamp % 4 not in buckets or r.timestamp < buckets[r.timestamp % 4].timestamp:
                buckets[r.timestamp % 4] = r
        out[sensor] = row(sensor, readings, best, buckets)
    return out


def check(rows: list[Any], count: int, keys: int) -> str | None:
    """None when ``rows`` are exactly the output of a failure-free run (see the module docstring)."""
    want = final_row(range(count), keys)
    seen: dict[str, list[int]] = defaultdict(list)
    finals: dict[str, Any] = {}
    for r in rows:
        seen[r[0]].append(r[1])
        if r[1] == want.get(r[0], [None, -1])[1]:
            finals[r[0]] = r
    problems = []
    for sensor, final in sorted(want.items()):
        ns = sorted(seen.get(sensor, []))
        if ns != list(range(1, final[1] + 1)):
            problems.append(f"{sensor}: counts are not 1..{final[1]} exactly once ({len(ns)} rows)")
        elif finals.get(sensor) != final:
            problems.append(f"{sensor}: final row {finals.get(sensor)} != {final}")
    if set(seen) - set(want):
        problems.append(f"unexpected sensors {sorted(set(seen) - set(want))}")
    return "; ".join(problems) or None
