"""``CompletedCheckpointStore``: retain N, subsume, savepoints kept, failed deletions lose nothing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from streamjob.worker.checkpoint.completed import CompletedCheckpoint
from streamjob.worker.checkpoint.store import CompletedCheckpointStore
from streamjob.worker.protocol.rest import CheckpointKind
from streamjob.worker.storage.retention import CheckpointEntry
from tests.unit.checkpoint_fakes import FakeStorage, InlineExecutor, Log, until

pytestmark = pytest.mark.unit


def checkpoint(cid: int) -> CompletedCheckpoint:
    return CompletedCheckpoint(
        cid, CheckpointKind.CHECKPOINT, cid * 10, cid * 10 + 5, 100, f"file:///ck/chk-{cid}/_metadata"
    )


def savepoint(cid: int) -> CompletedCheckpoint:
    location = f"file:///sp/savepoint-{cid}/_metadata"
    return CompletedCheckpoint(cid, CheckpointKind.SAVEPOINT, cid * 10, cid * 10 + 5, 100, location, request_id="r")


class Bed:
    """A store over a fake storage that already holds what the attempt completed."""

    def __init__(self, retained: int, **storage: bool) -> None:
        self.log = Log()
        self.storage = FakeStorage(self.log, **storage)
        self.store = CompletedCheckpointStore(retained=retained, storage=self.storage, executor=InlineExecutor())

    def complete(self, completed: CompletedCheckpoint, shared: frozenset[str] = frozenset()) -> list[int]:
        if not completed.is_savepoint:
            self.storage.checkpoints[completed.id] = shared
        return [c.id for c in self.store.add(completed)]

    async def settled(self) -> None:
        await until("retention to finish", lambda: self.store.retention_running is None)


def run(scenario: Coroutine[Any, Any, None]) -> None:
    asyncio.run(scenario)


def test_it_keeps_the_newest_n_checkpoints_and_subsumes_the_older_ones() -> None:
    async def scenario() -> None:
        bed = Bed(retained=2)
        assert bed.complete(checkpoint(1)) == []
        await bed.settled()
        assert bed.complete(checkpoint(2)) == []
        await bed.settled()
        assert bed.complete(checkpoint(3)) == [1]
        await bed.settled()
        assert [c.id for c in bed.store.checkpoints] == [2, 3]
        assert bed.store.latest == checkpoint(3)
        assert sorted(bed.storage.checkpoints) == [2, 3]
        assert bed.log.kinds("delete") == [(1,)]

    run(scenario())


def test_retention_also_deletes_what_earlier_attempts_left_and_keeps_shared_files_still_referenced() -> None:
    async def scenario() -> None:
        bed = Bed(retained=1)
        bed.storage.checkpoints[1] = frozenset({"shared/a", "shared/b"})  # an earlier attempt of this jobId
        bed.storage.incomplete.add(2)
        bed.complete(checkpoint(3), shared=frozenset({"shared/b"}))
        await bed.settled()
        assert sorted(bed.storage.checkpoints) == [3] and bed.storage.incomplete == set()
        assert bed.log.kinds("delete") == [(1, 2)]

    run(scenario())


def test_savepoints_are_kept_and_never_count_towards_the_retained_number() -> None:
    async def scenario() -> None:
        bed = Bed(retained=1)
        bed.complete(checkpoint(1))
        await bed.settled()
        assert bed.complete(savepoint(2)) == []
        assert bed.store.retention_running is None, "a savepoint starts no retention"
        bed.complete(checkpoint(3))
        await bed.settled()
        assert [c.id for c in bed.store.savepoints] == [2]
        assert [c.id for c in bed.store.checkpoints] == [3]
        assert bed.store.latest == checkpoint(3), "the latest checkpoint, never a savepoint"
        assert all(2 not in ids for ids in bed.log.kinds("delete"))

    run(scenario())


def test_a_failed_deletion_keeps_the_completed_checkpoint_and_the_next_run_catches_up() -> None:
    async def scenario() -> None:
        bed = Bed(retained=1, fail_deletes=True)
        bed.complete(checkpoint(1))
        await bed.settled()
        assert bed.complete(checkpoint(2)) == [1]
        await bed.settled()
        assert bed.store.latest == checkpoint(2), "the completion stands although the deletion failed"
        assert sorted(bed.storage.checkpoints) == [1, 2], "nothing was deleted"
        bed.storage.fail_deletes = False
        bed.complete(checkpoint(3))
        await bed.settled()
        assert sorted(bed.storage.checkpoints) == [3]
        assert bed.log.kinds("delete") == [(1, 2)]

    run(scenario())


def test_a_plan_that_would_delete_a_kept_checkpoint_is_not_run() -> None:
    """A ``_metadata`` that could not be read just then makes its checkpoint look invalid to the planner."""

    async def scenario() -> None:
        bed = Bed(retained=2)
        bed.complete(checkpoint(1))
        await bed.settled()
        bed.storage.unreadable.add(1)
        bed.complete(checkpoint(2))
        await bed.settled()
        assert bed.log.kinds("list") == [[1], [1, 2]], "the planner saw 1 as invalid and older than 2"
        assert bed.log.kinds("delete") == [], "checkpoint 1 is kept: the plan deleting it did not run"
        assert sorted(bed.storage.checkpoints) == [1, 2]
        bed.complete(checkpoint(3))
        await bed.settled()
        assert bed.log.kinds("delete") == [(1,)], "checkpoint 1 is no longer kept: now it may go"

    run(scenario())


def test_one_retention_runs_at_a_time_and_completions_meanwhile_coalesce_into_one_more() -> None:
    class SlowStorage(FakeStorage):
        def __init__(self, log: Log) -> None:
            super().__init__(log)
            self.release = threading.Event()
            self.listing = threading.Event()

        def list_checkpoints(self) -> list[CheckpointEntry]:
            self.listing.set()
            assert self.release.wait(10), "the test never released the listing"
            return super().list_checkpoints()

    async def scenario() -> None:
        log = Log()
        storage = SlowStorage(log)
        with ThreadPoolExecutor(4) as executor:
            store = CompletedCheckpointStore(retained=1, storage=storage, executor=executor)
            for cid in (1, 2, 3, 4):
                storage.checkpoints[cid] = frozenset()
                store.add(checkpoint(cid))
            await until("the first listing", storage.listing.is_set)
            storage.release.set()
            await until("retention to finish", lambda: store.retention_running is None)
        assert len(log.kinds("list")) == 2, "the first run, then one for the three completions during it"
        assert sorted(storage.checkpoints) == [4]

    run(scenario())


def test_retaining_fewer_than_one_checkpoint_is_refused() -> None:
    with pytest.raises(ValueError, match="retained must be at least 1, got 0"):
        CompletedCheckpointStore(retained=0, storage=FakeStorage(Log()), executor=InlineExecutor())
