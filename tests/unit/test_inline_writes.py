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


@pytest.mark.parametrize(
    ("local_disk", "size", "savepoint"),
    [
        (False, 100, False),  # S3: every write is a network round trip
        (True, INLINE_MAX_BYTES + 1, False),  # large: would stall processing
        (True, None, False),  # unknown size (RocksDB, incremental)
        (True, 100, True),  # savepoints may go anywhere
    ],
)
def test_everything_else_goes_to_the_io_thread(local_disk: bool, size: int | None, savepoint: bool) -> None:
    assert not InlineWritePolicy(local_disk=local_disk).inline(size, savepoint=savepoint)


def test_one_slow_write_among_fast_ones_keeps_writes_inline() -> None:
    policy = InlineWritePolicy(local_disk=True, max_seconds=0.010)
    for seconds in (0.002, 0.002, 0.030, 0.002):
        policy.record(seconds)
        assert policy.inline(10, savepoint=False)


def test_a_slow_disk_moves_writes_to_the_thread_and_is_probed_again() -> None:
    policy = InlineWritePolicy(local_disk=True, max_seconds=0.010, probe_every=4)
    for _ in range(3):
        policy.record(0.050)  # an NFS mount: every write is slow
    decisions = [policy.inline(10, savepoint=False) for _ in range(8)]
    assert decisions == [False, False, False, True, False, False, False, True]  # a probe every 4th
    decisions = []
    for _ in range(60):  # the disk got fast: each probe brings the average down
        decisions.append(policy.inline(10, savepoint=False))
        if decisions[-1]:
            policy.record(0.001)
    first_inline_for_good = next(i for i in range(60) if all(decisions[i:]))
    assert 8 <= first_inline_for_good <= 40
    assert policy.average_s is not None and policy.average_s <= 0.010
