"""Per-sensor averages over 10-second windows from a checkpointed parallel source (the seeds' complete example).

The source keeps its sequence number in operator state (``CheckpointedFunction``), so after a
restore it continues where the last checkpoint left it. Run it and stop it with Ctrl-C:
``streamjob run examples/sensors.py -p 2``; continue with ``--restore latest``.
"""

import random
import time
from dataclasses import dataclass

from streamjob.worker.api import (
    CheckpointedFunction,
    CheckpointingMode,
    EmbeddedRocksDBStateBackend,
    ExternalizedCheckpointCleanup,
    ListStateDescriptor,
    ProcessWindowFunction,
    RichParallelSourceFunction,
    StreamExecutionEnvironment,
    Time,
    TumblingProcessingTimeWindows,
)


@dataclass(frozen=True)
class SensorReading:
    sensor_id: str
    timestamp: int
    value: float


class SensorSource(RichParallelSourceFunction, CheckpointedFunction):
    """One reading per second per subtask; the sequence number is operator state."""

    def __init__(self, interval_s: float = 1.0, limit: int | None = None):
        self.interval_s = interval_s
        self.limit = limit
        self.running = True
        self.sequence_number = 0

    def run(self, ctx):
        index = self.get_runtime_context().get_index_of_this_subtask()
        rng = random.Random(index)
        while self.running and (self.limit is None or self.sequence_number < self.limit):
            with ctx.get_checkpoint_lock():
                ctx.collect(SensorReading(f"sensor-{index + 1}", int(time.time() * 1000), rng.random() * 100))
                self.sequence_number += 1
            time.sleep(self.interval_s)

    def cancel(self):
        self.running = False

    def snapshot_state(self, context):
        self.state.update([self.sequence_number])

    def initialize_state(self, context):
        self.state = context.get_operator_state_store().get_list_state(ListStateDescriptor("sequence-number", int))
        if context.is_restored():
            self.sequence_number = sum(self.state.get())
            print(f"Restoring from checkpoint at sequence number {self.sequence_number}")


class SensorDataProcessor(ProcessWindowFunction):
    def process(self, sensor_id, context, readings, out):
        values = [r.value for r in readings]
        average = sum(values) / len(values) if values else 0.0
        out.collect(f"Sensor {sensor_id} average: {average:.2f} (based on {len(values)} readings)")


def build():
    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(5000)
    config = env.get_checkpoint_config()
    config.set_checkpointing_mode(CheckpointingMode.EXACTLY_ONCE)
    config.set_checkpoint_timeout(60000)
    config.set_min_pause_between_checkpoints(2000)
    config.set_max_concurrent_checkpoints(1)
    config.set_externalized_checkpoint_cleanup(ExternalizedCheckpointCleanup.RETAIN_ON_CANCELLATION)
    env.set_state_backend(EmbeddedRocksDBStateBackend())

    readings = env.add_source(SensorSource()).uid("sensor-source")
    results = (
        readings.key_by(lambda r: r.sensor_id)
        .window(TumblingProcessingTimeWindows.of(Time.seconds(10)))
        .process(SensorDataProcessor())
        .uid("sensor-averages")
    )
    results.print()
    env.execute("Complete Checkpointing Example")


if __name__ == "__main__":
    build()
