"""Records of the job's own classes cross between slot processes: the allow-list a slot builds at load.

A job file whose records are a dataclass with a datetime and a Decimal, a plain class, a
registered nested class and plain tuples runs at parallelism 2 (real slot processes, hash
partitioning: about half of the records cross the data port, encoded as pickle or msgpack). The
sinks write what they receive; the output must be exactly the expected records, with their types.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

JOB = """
import datetime, decimal, json, os
from dataclasses import dataclass
from streamjob.worker.api import RichSinkFunction, StreamExecutionEnvironment

@dataclass(frozen=True)
class Reading:
    sensor: str
    value: decimal.Decimal
    at: datetime.datetime

class Total:
    def __init__(self, sensor, n):
        self.sensor, self.n = sensor, n

class Wrapper:
    class Tag:
        def __init__(self, name):
            self.name = name

class Out(RichSinkFunction):
    def open(self, ctx):
        self.path = os.path.join(os.environ["CODEC_OUT"], f"part-{ctx.get_index_of_this_subtask()}")
    def invoke(self, value):
        reading, total, tag, row = value
        with open(self.path, "a") as f:
            f.write(json.dumps([type(reading).__name__, reading.sensor, str(reading.value),
                                reading.at.isoformat(), type(total).__name__, total.n, type(tag).__name__,
                                tag.name, type(row).__name__, list(row)]) + "\\n")

def build():
    env = StreamExecutionEnvironment.get_execution_environment()
    env.register_type(Wrapper.Tag)
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    readings = [Reading(f"s{i % 7}", decimal.Decimal(i) / 4, start + datetime.timedelta(seconds=i)) for i in range(400)]
    (env.from_collection(readings)
        .key_by(lambda r: r.sensor)
        .map(lambda r: (r, Total(r.sensor, int(r.value * 4)), Wrapper.Tag(r.sensor.upper()),
                        (r.sensor, int(r.value * 4))))
        .key_by(lambda v: v[3][1] % 5)
        .add_sink(Out()))
    env.execute("codec-records")
"""


def _run(tmp_path: Path, job_text: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    job = tmp_path / "codec_records_job.py"
    job.write_text(job_text)
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "streamjob"),
            "run",
            str(job),
            "-p",
            "2",
            "--checkpoint-dir",
            str(tmp_path / "chk"),
            "--rest-port",
            "0",
        ],
        cwd=tmp_path,
        env={**os.environ, "CODEC_OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return done, out


def test_an_unregistered_nested_class_fails_the_job_naming_the_fix(tmp_path: Path) -> None:
    done, _ = _run(tmp_path, JOB.replace("    env.register_type(Wrapper.Tag)\n", ""))
    assert done.returncode != 0
    assert "refusing to decode codec_records_job.Wrapper.Tag" in done.stdout + done.stderr
    assert "env.register_type(cls)" in done.stdout + done.stderr


def test_job_classes_cross_between_slots_exactly(tmp_path: Path) -> None:
    done, out = _run(tmp_path, JOB)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [json.loads(line) for part in sorted(out.glob("part-*")) for line in part.read_text().splitlines()]
    assert len(list(out.glob("part-*"))) == 2  # both sink subtasks received records: they crossed processes
    got = sorted(lines, key=lambda v: v[9][1])
    expected = [
        [
            "Reading",
            f"s{i % 7}",
            str(__import__("decimal").Decimal(i) / 4),
            f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}+00:00",
            "Total",
            i,
            "Tag",
            f"S{i % 7}",
            "tuple",
            [f"s{i % 7}", i],
        ]
        for i in range(400)
    ]
    assert got == expected
