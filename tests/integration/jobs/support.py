"""Helpers shared by the local-mode integration tests: job paths, storage roots, storage snapshots."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streamjob.worker.snapshot.metadata import CheckpointMetadata, decode_metadata
from streamjob.worker.storage.stores import open_store
from streamjob.worker.testing import FaultInjector, JobError, LocalJob, read_committed, run_cli
from tests.integration.jobs import keyed_sum

JOBS = Path(__file__).resolve().parent
KEYED_SUM = str(JOBS / "keyed_sum.py")


def job_path(name: str) -> str:
    return str(JOBS / name)


def savepoint_metadata(directory: str) -> CheckpointMetadata:
    """The decoded ``_metadata`` of a snapshot directory."""
    store = open_store(directory)
    return decode_metadata(store.get("_metadata"), source=store.uri("_metadata"))


def consumed_by_savepoint(directory: str, count: int, source_uid: str = "events") -> list[int]:
    """Event indices the keyed-sum generator had emitted when the (stop-with-)savepoint was taken."""
    return keyed_sum.consumed(savepoint_metadata(directory).source_positions[source_uid], count)


def tree_digest(uri: str) -> dict[str, str]:
    """Every object under ``uri`` with the sha256 of its bytes (to prove nothing was changed)."""
    store = open_store(uri)
    return {info.key: hashlib.sha256(store.get(info.key)).hexdigest() for info in store.list("")}


def copy_tree(source: str, target: str) -> int:
    """Copies every object under ``source`` to ``target`` (file:// or s3://); returns the count."""
    src, dst = open_store(source), open_store(target)
    keys = [info.key for info in src.list("")]
    for key in keys:
        dst.put(key, src.get(key))
    return len(keys)


def delete_tree(uri: str) -> int:
    """Deletes every object under ``uri``."""
    return open_store(uri).delete_prefix("")


LONG = 30_000  # never reached: the tests stop the job with a savepoint once it recovered


def run_with_kill(
    root: str, injector: FaultInjector, options: Sequence[str] = (), args: Sequence[str] = ()
) -> list[int]:
    """Runs keyed-sum, kills a worker as drawn, waits for a checkpoint after recovery, stops with a savepoint.

    Output goes to ``<root>/out``; returns the event indices the sources had read at the final savepoint.
    """
    print(injector)  # shown by pytest when the test fails: the seed replays the fault
    out = f"{root}/out"
    with long_keyed_sum(
        out,
        *args,
        checkpoint_dir=f"{root}/checkpoints",
        options=options,
    ) as job:
        killed = injector.inject(job, min_records=300)
        info = job.wait_for_running(restarts=1)
        assert killed not in job.worker_pids(), injector
        assert info["attempt"] == 1, injector
        assert info["restored_from"] is not None and "/chk-" in info["restored_from"], injector
        done = job.checkpoints()["counts"]["completed"]
        job.wait_for_checkpoints(done + 1)
        savepoint = stop_with_savepoint(job)
        assert job.wait() == 0, f"{injector}\n{job.describe()}"
    events = consumed_by_savepoint(savepoint, LONG)
    assert 300 <= len(events) < LONG, (injector, len(events))
    return events


def stop_with_savepoint(job: LocalJob, attempts: int = 5) -> str:
    """Stop-with-savepoint; retried while a periodic checkpoint overtakes the savepoint.

    That failure is an open runtime bug (periodic checkpoints are triggered while a savepoint is
    pending; /tmp/streamjob-notes/bugs.md); ``test_local_checkpointing`` has its own test for it.
    """
    for attempt in range(attempts):
        try:
            return job.trigger_savepoint(stop=True)
        except JobError as err:
            if "overtook" not in str(err).split("\n", 1)[0] or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def finished_keyed_sum_run(root: str, *, count: int = 600, rate: int = 600) -> str:
    """Runs the keyed-sum job to its end under ``root`` (``checkpoints/`` and ``out/``); returns ``root``.

    The restore-defect tests damage copies of this run's checkpoints, so it must have completed some.
    """
    result = run_cli(
        "run",
        "--rest-port",
        "0",
        "--checkpoint-dir",
        f"{root}/checkpoints",
        KEYED_SUM,
        f"out={root}/out",
        f"count={count}",
        f"rate={rate}",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return root


def long_keyed_sum(out: str, *args: str, **options: Any) -> LocalJob:
    """The keyed-sum job over ``LONG`` events at 1,000/s writing to ``out`` (``options``: ``LocalJob``'s)."""
    return LocalJob(KEYED_SUM, f"out={out}", f"count={LONG}", "rate=1000", *args, **options)


def assert_exactly_once_until(savepoint: str, out: str) -> list[int]:
    """Asserts ``out`` holds exactly the results of the events read by ``savepoint`` (none lost, none twice).

    Returns those event indices; at least one must have been read.
    """
    events = consumed_by_savepoint(savepoint, LONG)
    assert len(events) > 0
    problem = keyed_sum.check_exactly_once(read_committed(out), events)
    assert problem is None, problem
    return events
