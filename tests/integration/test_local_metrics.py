"""The JobMaster's ``GET /metrics`` in local mode, read from real jobs: the backpressure counter.

``streamjob_backpressured_seconds_total`` is the time a task waited because its downstream had no
room (no credit on a local or a remote channel). A source feeding a sink that sleeps 1 ms per record
spends nearly all its time there; a source throttled well below what its consumers take spends none.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamjob.worker.testing import LocalJob
from tests.integration.jobs.support import job_path

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SLOW_SINK = job_path("slow_sink.py")
_WINDOW_S = 6.0


def backpressured_s(job: LocalJob) -> dict[str, float]:
    """``vertex/subtask`` → seconds, from the job's ``GET /metrics``."""
    with urllib.request.urlopen(job.rest_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        f"{s.labels['vertex']}/{s.labels['subtask']}": s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "streamjob_backpressured_seconds_total"
    }


def source_share(job: LocalJob) -> dict[str, float]:
    """Per source subtask: backpressured seconds per second of a window after the channels filled."""
    job.wait_for_running()
    job.poll(
        "metrics of both source subtasks",
        lambda: len([k for k in backpressured_s(job) if k.startswith("gen/")]) == 2 or None,
        30,
    )
    time.sleep(1.0)
    t0, first = time.monotonic(), backpressured_s(job)
    time.sleep(_WINDOW_S)
    t1, last = time.monotonic(), backpressured_s(job)
    return {k: (last[k] - first[k]) / (t1 - t0) for k in last if k.startswith("gen/")}


def test_a_source_feeding_a_slow_sink_is_backpressured_most_of_the_time(tmp_path: Path) -> None:
    with LocalJob(SLOW_SINK, "sink_us=1000", checkpoint_dir=f"{tmp_path}/checkpoints") as job:
        share = source_share(job)
    assert len(share) == 2 and all(s >= 0.5 for s in share.values()), (share, job.describe())


def test_a_source_its_consumers_keep_up_with_is_not_backpressured(tmp_path: Path) -> None:
    with LocalJob(SLOW_SINK, "sink_us=0", "rate=2000", checkpoint_dir=f"{tmp_path}/checkpoints") as job:
        share = source_share(job)
    assert len(share) == 2 and all(s <= 0.05 for s in share.values()), (share, job.describe())
