"""The sensor job (``examples/sensors.py``) on event time, with watermarks and late data to a side output.

Each source subtask emits one ``SensorReading`` per second carrying the time it was *measured*
(its event time). Some arrive out of order (every 5th reading was measured 1.5 s before the one
sent before it) and some very late (every 7th was measured 15 s before it was sent). The job
averages each sensor's readings over 10-second tumbling **event-time** windows:

- ``WatermarkStrategy.for_bounded_out_of_orderness(2 s)``: a window fires once readings 2 s past its
  end arrived, so the out-of-order readings still count;
- ``allowed_lateness(1 s)``: a reading up to 1 s after that still updates the window (it fires again);
- ``side_output_late_data(LATE)``: later readings go to the side output, printed as ``Late reading: ...``,
  instead of being dropped.

Run it and stop it with Ctrl-C: ``streamjob run examples/sensors_event_time.py -p 2``; continue with
``--restore latest``. ``streamjob run examples/sensors_event_time.py readings=40 interval=0.05`` (or
``python examples/sensors_event_time.py readings=40 interval=0.05``) sends 40 readings per sensor, one
every 50 ms, and ends: the end of input fires the last windows.
"""

import random
import sys
import time

from streamjob.worker.api import (
    CheckpointedFunction,
    OutputTag,
    ProcessWindowFunction,
    RichParallelSourceFunction,
    StreamExecutionEnvironment,
    Time,
    TumblingEventTimeWindows,
    WatermarkStrategy,
)

LATE = OutputTag("late-readings")


def main(args=None):
    opts = dict(arg.partition("=")[::2] for arg in args or [])
    readings = int(opts["readings"]) if "readings" in opts else None
    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(5000)
    sensor_data = env.add_source(SensorSource(readings, float(opts.get("interval", "1")))).uid("sensors")
    results = windowed_averages(sensor_data)
    results.print()
    results.get_side_output(LATE).map(lambda reading: f"Late reading: {reading}").print()
    env.execute("Event Time Sensors Example")


def windowed_averages(sensor_data):
    """Timestamps and watermarks, 10 s event-time windows per sensor, late readings to ``LATE``."""
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(Time.seconds(2)).with_timestamp_assigner(
        lambda reading: reading.timestamp
    )
    return (
        sensor_data.assign_timestamps_and_watermarks(strategy)
        .uid("timestamps")
        .key_by(lambda reading: reading.sensor_id)
        .window(TumblingEventTimeWindows.of(Time.seconds(10)))
        .allowed_lateness(Time.seconds(1))
        .side_output_late_data(LATE)
        .process(SensorDataProcessor())
        .uid("averages")
    )


def measured_at(start_ms, n):
    """When reading ``n`` of a sensor was measured: one per second, some out of order, some very late."""
    ts = start_ms + n * 1000
    if n % 7 == 6:
        return ts - 15000  # sent 15 s after it was measured: later than the bound and the lateness
    if n % 5 == 4:
        return ts - 1500  # out of order, inside the 2 s bound
    return ts


class SensorSource(RichParallelSourceFunction, CheckpointedFunction):
    """Sensor data source: one reading per ``interval_s`` per subtask; ``readings`` of them, or unbounded."""

    def __init__(self, readings=None, interval_s=1.0):
        self.is_running = True
        self.sequence_number = 0
        self.readings = readings
        self.interval_s = interval_s
        self.start_ms = int(time.time() * 1000) // 10000 * 10000

    def run(self, ctx):
        sensor = "sensor-" + str(self.get_runtime_context().get_index_of_this_subtask() + 1)
        while self.is_running and (self.readings is None or self.sequence_number < self.readings):
            with ctx.get_checkpoint_lock():
                ts = measured_at(self.start_ms, self.sequence_number)
                ctx.collect(SensorReading(sensor, ts, random.random() * 100))
                self.sequence_number += 1
            time.sleep(self.interval_s)

    def cancel(self):
        self.is_running = False

    def snapshot_state(self, context):
        print("Checkpoint taken at sequence number: " + str(self.sequence_number))

    def initialize_state(self, context):
        if context.is_restored():
            print("Restoring from checkpoint")


class SensorDataProcessor(ProcessWindowFunction):
    """Averages a sensor's readings of one window."""

    def process(self, sensor_id, context, readings, out):
        values = [reading.value for reading in readings]
        average = sum(values) / len(values) if values else 0
        start = context.window().start
        out.collect(f"Sensor {sensor_id} window {start}: average {average:.2f} (based on {len(values)} readings)")


class SensorReading:
    """Sensor reading."""

    def __init__(self, sensor_id=None, timestamp=0, value=0.0):
        self.sensor_id = sensor_id
        self.timestamp = timestamp
        self.value = value

    def __repr__(self):
        return f"SensorReading{{sensorId='{self.sensor_id}', timestamp={self.timestamp}, value={self.value}}}"


if __name__ == "__main__":
    main(sys.argv[1:])
