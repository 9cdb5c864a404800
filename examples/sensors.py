"""The seeds' CompleteCheckpointingExample, ported line by line.

A parallel source emits one ``SensorReading`` per second per subtask (a plain class, as in the
seed: a no-argument constructor and public fields); readings are keyed by sensor and averaged over
10-second tumbling processing-time windows, whose contents (the readings themselves) are window
state on RocksDB, checkpointed every 5 seconds. The source prints a line at every checkpoint and
one when it is restored, as the seed's does. Run it and stop it with Ctrl-C:
``streamjob run examples/sensors.py -p 2``; continue with ``--restore latest``.

Java → Python: ``Math.random()`` → ``random.random()``, ``System.currentTimeMillis()`` →
``int(time.time() * 1000)``, ``synchronized (ctx.getCheckpointLock())`` → ``with
ctx.get_checkpoint_lock():``, ``String.format("%.2f", x)`` → ``f"{x:.2f}"``. ``SensorReading``
needs no registration: classes defined in the job's module are its allowed classes, stored in
state by their fields (docs/user-guide.md, "State serializers").
"""

import random
import time

from streamjob.worker.api import (
    CheckpointedFunction,
    CheckpointingMode,
    EmbeddedRocksDBStateBackend,
    ExternalizedCheckpointCleanup,
    ProcessWindowFunction,
    RichParallelSourceFunction,
    StreamExecutionEnvironment,
    Time,
    TumblingProcessingTimeWindows,
)


def main():
    env = StreamExecutionEnvironment.get_execution_environment()

    # Configure checkpointing
    configure_checkpointing(env)

    # Create the sensor data stream
    sensor_data = env.add_source(SensorSource())

    # Process the sensor data and keep state
    results = (
        sensor_data.key_by(lambda reading: reading.sensor_id)
        .window(TumblingProcessingTimeWindows.of(Time.seconds(10)))
        .process(SensorDataProcessor())
    )

    results.print()

    env.execute("Complete Checkpointing Example")


def configure_checkpointing(env):
    """Configure checkpointing."""
    # Checkpoint every 5 seconds
    env.enable_checkpointing(5000)

    # Checkpointing mode
    env.get_checkpoint_config().set_checkpointing_mode(CheckpointingMode.EXACTLY_ONCE)

    # Checkpoint timeout
    env.get_checkpoint_config().set_checkpoint_timeout(60000)

    # Minimum pause between checkpoints
    env.get_checkpoint_config().set_min_pause_between_checkpoints(2000)

    # Maximum concurrent checkpoints
    env.get_checkpoint_config().set_max_concurrent_checkpoints(1)

    # State backend
    env.set_state_backend(EmbeddedRocksDBStateBackend())

    # Checkpoint storage
    env.get_checkpoint_config().set_checkpoint_storage("file:///tmp/flink-checkpoints")

    # Externalized checkpoints
    env.get_checkpoint_config().set_externalized_checkpoint_cleanup(
        ExternalizedCheckpointCleanup.RETAIN_ON_CANCELLATION
    )


class SensorSource(RichParallelSourceFunction, CheckpointedFunction):
    """Sensor data source."""

    def __init__(self):
        self.is_running = True
        self.sequence_number = 0

    def run(self, ctx):
        while self.is_running:
            with ctx.get_checkpoint_lock():
                # Generate a sensor reading
                reading = SensorReading(
                    "sensor-" + str(self.get_runtime_context().get_index_of_this_subtask() + 1),
                    int(time.time() * 1000),
                    random.random() * 100,
                )

                ctx.collect(reading)
                self.sequence_number += 1

                time.sleep(1)  # one reading per second

    def cancel(self):
        self.is_running = False

    def snapshot_state(self, context):
        # Keep state at a checkpoint
        print("Checkpoint taken at sequence number: " + str(self.sequence_number))

    def initialize_state(self, context):
        # Initialize state
        if context.is_restored():
            print("Restoring from checkpoint")


class SensorDataProcessor(ProcessWindowFunction):
    """Sensor data processor."""

    def process(self, sensor_id, context, readings, out):
        sum_ = 0.0
        count = 0

        for reading in readings:
            sum_ += reading.value
            count += 1

        average = sum_ / count if count > 0 else 0

        out.collect("Sensor " + sensor_id + " average: " + f"{average:.2f}" + " (based on " + str(count) + " readings)")


class SensorReading:
    """Sensor reading."""

    def __init__(self, sensor_id=None, timestamp=0, value=0.0):
        self.sensor_id = sensor_id
        self.timestamp = timestamp
        self.value = value

    def __repr__(self):
        return f"SensorReading{{sensorId='{self.sensor_id}', timestamp={self.timestamp}, value={self.value}}}"


if __name__ == "__main__":
    main()
