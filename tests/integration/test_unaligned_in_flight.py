"""Unaligned checkpoints really persist in-flight records, and a restore replays them exactly once.

A slow keyed stage behind fast sources keeps batches queued in front of it; unaligned barriers
overtake them, so checkpoints carry channel state. The test waits until a completed checkpoint
holds in-flight records, kills a worker, lets the job restore, and checks the committed output.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import pytest

from streamjob.worker.config import ALIGNED_TIMEOUT_WITHOUT_UNALIGNED
from streamjob.worker.state.serializers import SafeSerializer
from streamjob.worker.storage import list_snapshots
from streamjob.worker.storage.stores import open_store
from streamjob.worker.testing import LocalJob, read_committed
from streamjob.worker.testing.local_job import run_cli
from tests.integration.jobs import keyed_sum
from tests.integration.jobs.support import (
    KEYED_SUM,
    LONG,
    consumed_by_savepoint,
    savepoint_metadata,
    stop_with_savepoint,
)

pytestmark = pytest.mark.integration


def _in_flight_records(checkpoints: str) -> tuple[str | None, int]:
    """A completed checkpoint with channel state, and how many records it holds."""
    for row in list_snapshots(checkpoints):
        if row.kind != "checkpoint" or row.problem is not None:
            continue
        meta = savepoint_metadata(row.location)
        handles = [h for op in meta.operators.values() for s in op.subtasks for h in s.channel]
        if not handles:
            continue
        base = open_store(row.location.rsplit("/chk-", 1)[0])
        records = sum(len(SafeSerializer().decode(base.get(h.path))) for h in handles)
        if records:
            return row.location, records
    return None, 0


def test_unaligned_checkpoint_stores_in_flight_records_and_restores_them_exactly(tmp_path: object) -> None:
    root = tmp_path.as_uri()  # type: ignore[attr-defined]
    out, checkpoints = f"{root}/out", f"{root}/checkpoints"
    found: tuple[str | None, int] = (None, 0)
    with LocalJob(
        KEYED_SUM,
        f"out={out}",
        f"count={LONG}",
        "rate=4000",
        "unaligned=1",
        "slow_us=300",
        "interval=150",
        "retained=100",
        checkpoint_dir=checkpoints,
    ) as job:
        job.wait_for_checkpoints(2)

        def stored() -> bool:
            nonlocal found
            found = _in_flight_records(checkpoints)
            return found[0] is not None

        job.poll("a completed checkpoint holding in-flight records", stored, 60)
        job.kill_worker(1)
        job.wait_for_running(restarts=1)
        job.wait_for_checkpoints(job.checkpoints()["counts"]["completed"] + 1)
        savepoint = stop_with_savepoint(job)
        assert job.wait() == 0, job.describe()
    location, records = found
    assert location is not None and records > 0
    events = consumed_by_savepoint(savepoint, LONG)
    problem = keyed_sum.check_exactly_once(read_committed(out), events)
    assert problem is None, f"in-flight records in {location}: {records}; {problem}"


SLOW_US = 1000  # the sink's time per record
BUFFER = 1024  # records per batch: 8 credits x 2 channels of ~512-record batches queue ~8 s of work per subtask


def _drain_s(location: str) -> float:
    """How long the slowest subtask needs to process the in-flight records of a checkpoint: what alignment waits."""
    meta = savepoint_metadata(location)
    base = open_store(location.rsplit("/chk-", 1)[0])
    per_subtask = [
        sum(len(SafeSerializer().decode(base.get(h.path))) for h in s.channel)
        for op in meta.operators.values()
        for s in op.subtasks
    ]
    return max(per_subtask, default=0) * SLOW_US / 1e6


@pytest.mark.parametrize(
    "mode",
    # Debloating off: the test needs the full credit windows it bounds (8 x ~512 records per channel).
    [
        ["-D", "checkpoint.unaligned=true", "-D", "buffer_debloat.enabled=false"],
        # Flink's aligned-checkpoint timeout: checkpoints start aligned and switch after 200 ms.
        [
            "-D",
            "checkpoint.unaligned=true",
            "-D",
            "checkpoint.aligned_timeout_ms=200",
            "-D",
            "buffer_debloat.enabled=false",
        ],
    ],
    ids=["unaligned", "unaligned-with-aligned-timeout"],
)
def test_checkpoints_overtake_a_backlog_and_a_restore_replays_it_exactly(tmp_path: object, mode: list[str]) -> None:
    """Under backpressure a checkpoint takes a fraction of the backlog's drain time, and is exact after a kill.

    Unthrottled sources behind a sink that needs 1 ms per record keep every channel's credit window
    full; the sink is chained into the keyed reduce, so its task is busy for a whole batch at a time.
    """
    root = tmp_path.as_uri()  # type: ignore[attr-defined]
    out, checkpoints = f"{root}/out", f"{root}/checkpoints"
    count = 200_000  # never reached: the job is stopped with a savepoint once it recovered
    timed: list[tuple[int, int, float]] = []  # (id, duration in ms, drain time of its in-flight data in s)
    with LocalJob(
        KEYED_SUM,
        f"out={out}",
        f"count={count}",
        "rate=0",
        f"slow_us={SLOW_US}",
        f"buffer={BUFFER}",
        "interval=300",
        "retained=100",
        checkpoint_dir=checkpoints,
        options=mode,
    ) as job:

        def backlogged() -> bool:
            for record in job.checkpoints()["history"]:
                if (
                    record["kind"] == "checkpoint"
                    and record["status"] == "COMPLETED"
                    and record["id"] not in {t[0] for t in timed}
                ):
                    drain = _drain_s(record["location"].removesuffix("/_metadata"))
                    if drain >= 3.0:  # the credit windows were full
                        timed.append((record["id"], record["duration_ms"], drain))
            return len(timed) >= 3

        job.poll("3 checkpoints over a full backlog", backlogged, 90, interval=0.2)
        job.kill_worker(1)
        job.wait_for_running(restarts=1)
        job.wait_for_checkpoints(job.checkpoints()["counts"]["completed"] + 1, timeout=90)
        savepoint = stop_with_savepoint(job)
        assert job.wait() == 0, job.describe()
    if "checkpoint.aligned_timeout_ms=200" in mode:
        # Started aligned: a checkpoint holding in-flight data switched after waiting the timeout.
        assert all(duration_ms >= 200 for _, duration_ms, _ in timed), timed
    ratios = sorted(duration_ms / 1000 / drain for _, duration_ms, drain in timed)
    # Alignment would process the whole backlog first (ratio ≥ 1); overtaking it costs a slice of
    # work plus a producer's wait for one credit.
    assert ratios[len(ratios) // 2] < 0.25, f"checkpoint (id, ms, drain s): {timed}"
    events = consumed_by_savepoint(savepoint, count)
    problem = keyed_sum.check_exactly_once(read_committed(out), events)
    assert problem is None, problem


def test_an_aligned_timeout_without_unaligned_checkpoints_keeps_them_aligned(tmp_path: object) -> None:
    """As in Flink: behind a slow sink, checkpoints outlast a 50 ms timeout and still store no in-flight data."""
    root = tmp_path.as_uri()  # type: ignore[attr-defined]
    checkpoints = f"{root}/checkpoints"
    with LocalJob(
        KEYED_SUM,
        f"out={root}/out",
        f"count={LONG}",
        "rate=0",
        "slow_us=1000",
        "interval=300",
        "retained=100",
        checkpoint_dir=checkpoints,
        options=["-D", "checkpoint.aligned_timeout_ms=50"],
    ) as job:
        job.wait_for_checkpoints(3, timeout=90)
        history = [r for r in job.checkpoints()["history"] if r["kind"] == "checkpoint" and r["status"] == "COMPLETED"]
        output = job.output()
    assert max(r["duration_ms"] for r in history) > 50, history  # the timeout would have switched them
    for record in history:
        meta = savepoint_metadata(record["location"].removesuffix("/_metadata"))
        assert [h for op in meta.operators.values() for s in op.subtasks for h in s.channel] == [], record
        assert not meta.unaligned, record
    assert ALIGNED_TIMEOUT_WITHOUT_UNALIGNED in output, output[-3000:]


def test_a_restore_with_the_checkpoint_id_of_ignored_in_flight_data_drops_that_data(tmp_path: object) -> None:
    """``-D checkpoint.id_of_ignored_in_flight_data=N``: the restore from N skips N's in-flight records.

    The restored reduce has every event the sources emitted before N's barriers except those in
    flight; the sources go on after their barriers. So each key's counts continue from
    (emitted - dropped) and end at (all - dropped), and its final total lacks the dropped amounts.
    """
    root = tmp_path.as_uri()  # type: ignore[attr-defined]
    job_args = [f"count={LONG}", "rate=0", "unaligned=1", "interval=200", "retained=100"]
    found: tuple[str | None, int] = (None, 0)
    with LocalJob(
        KEYED_SUM, f"out={root}/out1", *job_args, "slow_us=1000", checkpoint_dir=f"{root}/checkpoints1"
    ) as job:

        def stored() -> bool:
            nonlocal found
            found = _in_flight_records(f"{root}/checkpoints1")
            return found[0] is not None

        job.poll("a completed checkpoint holding in-flight records", stored, 60)
    location, _ = found
    assert location is not None
    meta = savepoint_metadata(location)
    base = open_store(location.rsplit("/chk-", 1)[0])
    dropped: list[Any] = [
        record
        for op in meta.operators.values()
        for s in op.subtasks
        for h in s.channel
        for record in SafeSerializer().decode(base.get(h.path))
    ]
    assert dropped
    result = run_cli(
        "run",
        "--rest-port",
        "0",
        "--checkpoint-dir",
        f"{root}/checkpoints2",
        "--restore",
        location,
        "-D",
        f"checkpoint.id_of_ignored_in_flight_data={meta.checkpoint_id}",
        KEYED_SUM,
        f"out={root}/out2",
        *job_args,
        "slow_us=1",
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    keys = int(keyed_sum.DEFAULTS["keys"])
    everything = keyed_sum.expected(range(LONG), keys)
    emitted = keyed_sum.expected(keyed_sum.consumed(meta.source_positions["events"], LONG), keys)
    lost: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for key, n, amount in dropped:
        lost[key][0] += n
        lost[key][1] += amount
    want: dict[str, tuple[list[int], int | None]] = {}
    for key, (n, total) in everything.items():
        first, last = emitted.get(key, (0, 0))[0] - lost[key][0] + 1, n - lost[key][0]
        want[key] = (list(range(first, last + 1)), total - lost[key][1] if last >= first else None)
    rows = read_committed(f"{root}/out2")
    counts: dict[str, Counter[int]] = defaultdict(Counter)
    finals: dict[str, int] = {}
    for key, n, total in rows:
        counts[key][n] += 1
        if key in want and want[key][0] and n == want[key][0][-1]:
            finals[key] = total
    got = {key: (sorted(counts[key].elements()), finals.get(key)) for key in want | dict.fromkeys(counts)}
    assert got == want, f"{len(dropped)} in-flight records dropped from {location}"
