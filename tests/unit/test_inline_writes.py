"""InlineWritePolicy (runtime/inline_writes.py): which snapshots the task writes itself."""

from __future__ import annotations

import pytest

from streamjob.worker.runtime.inline_writes import INLINE_MAX_BYTES, InlineWritePolicy

pytestmark = pytest.mark.unit


def test_small_checkpoints_to_a_local_disk_are_written_inline() -> None:
    policy = InlineWritePolicy(local_disk=True)
    assert policy.inline(100_000, savepoint=False)
    assert policy.inline(0, savepoint=False)
    assert policy.inline(INLINE_MAX_BYTES, savepoint=False)


@pytest.mark.parametrize(("local_disk", "size", "savepoint"), [
    (False, 100, False),                   # S3: every write is a network round trip
    (True, INLINE_MAX_BYTES + 1, False),   # large: would stall processing
    (True, None, False),                   # unknown size (RocksDB, incremental)
    (True, 100, True),                     # savepoints may go anywhere
])
def test_everything_else_goes_to_the_io_thread(local_disk: bool, size: int | None, savepoint: bool) -> None:
    assert not InlineWritePolicy(local_disk=local_disk).inline(size, savepoint=savepoint)


def test_a_slow_disk_moves_writes_to_the_thread_and_is_probed_again() -> None:
    policy = InlineWritePolicy(local_disk=True, max_seconds=0.003, probe_every=4)
    policy.record(0.001)
    assert policy.inline(10, savepoint=False)
    policy.record(0.100)  # one slow fsync: average 50 ms
    decisions = [policy.inline(10, savepoint=False) for _ in range(8)]
    assert decisions == [False, False, False, True, False, False, False, True]  # a probe every 4th
    for _ in range(6):  # fast probes bring the average back under the limit
        policy.record(0.001)
    assert policy.average_s is not None and policy.average_s <= 0.003
    assert policy.inline(10, savepoint=False)
