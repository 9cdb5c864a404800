"""The legacy source's checkpoint lock: the task never blocks to drain and gets its turn before the source.

The source thread here behaves like the seed's ``SensorSource``: it sleeps while holding the lock and
takes it back at once. With a plain ``RLock`` the task's drain waited on the slot's event loop for as long
as the source kept winning the lock.
"""

from __future__ import annotations

import threading
import time

import pytest

from streamjob.worker.runtime.checkpoint_lock import CheckpointLock

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

HOLD_S = 0.2


class _GreedySource:
    """Holds the lock ``HOLD_S`` per iteration and re-takes it immediately, until stopped."""

    def __init__(self, lock: CheckpointLock) -> None:
        self.lock = lock
        self.running = True
        self.iterations = 0
        self.holding = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while self.running:
            with self.lock:
                self.holding.set()
                time.sleep(HOLD_S)
                self.iterations += 1

    def __enter__(self) -> _GreedySource:
        self.thread.start()
        assert self.holding.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.running = False
        self.lock.withdraw()
        self.thread.join(5)


def test_the_task_never_blocks_and_gets_the_next_turn() -> None:
    lock = CheckpointLock()
    with _GreedySource(lock):
        tries = []
        deadline = time.monotonic() + 5
        got = False
        while not got and time.monotonic() < deadline:
            started = time.monotonic()
            got = lock.try_acquire_for_task()
            tries.append(time.monotonic() - started)
            if not got:
                time.sleep(0.005)
        assert got, "the task never got the lock from a greedy source"
        assert max(tries) < 0.05, f"a try blocked for {max(tries):.3f} s"
        assert len(tries) * 0.005 < 2 * HOLD_S + 0.1  # one source hold at most, not many
        lock.release()


def test_a_snapshot_waits_for_one_hold_at_most_again_and_again() -> None:
    lock = CheckpointLock()
    with _GreedySource(lock) as source:
        for _ in range(5):
            started = time.monotonic()
            lock.acquire_for_task()
            waited = time.monotonic() - started
            lock.release()
            assert waited < HOLD_S + 0.1, f"the snapshot waited {waited:.3f} s for a {HOLD_S} s hold"
            time.sleep(0.01)
        assert source.iterations >= 1  # the source still makes progress between the task's turns


def test_wait_for_space_gives_up_every_level_and_takes_them_back() -> None:
    lock = CheckpointLock()
    released = threading.Event()
    back = threading.Event()

    def source() -> None:
        with lock, lock:  # nested, as collect() inside the user's ``with`` is
            released.set()
            lock.wait_for_space(5)
            back.set()
            lock.release()  # still held twice after the wait: this and the outer ``with``'s
            lock.acquire()

    thread = threading.Thread(target=source, daemon=True)
    thread.start()
    assert released.wait(5)
    lock.acquire_for_task()  # free while the source waits for space
    assert not back.is_set()
    lock.release()  # a drain: wakes the source
    thread.join(5)
    assert back.is_set() and not thread.is_alive()
    assert lock.try_acquire_for_task()  # the source left it entirely
    lock.release()


def test_reentrancy_and_ownership() -> None:
    lock = CheckpointLock()
    assert lock.acquire() and lock.acquire()
    errors: list[BaseException] = []

    def other() -> None:
        try:
            lock.release()
        except RuntimeError as err:
            errors.append(err)
        assert lock.acquire(blocking=False) is False
        assert lock.acquire(timeout=0.05) is False

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(5)
    assert len(errors) == 1
    lock.release()
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()


def test_a_withdrawn_task_does_not_hold_the_source_back() -> None:
    lock = CheckpointLock()
    with _GreedySource(lock) as source:
        while lock.try_acquire_for_task():  # caught the source between two holds: try again
            lock.release()
            time.sleep(0.01)
        # the task has asked for its turn ...
        lock.withdraw()  # ... and closes instead
        seen = source.iterations
        deadline = time.monotonic() + 5
        while source.iterations < seen + 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert source.iterations >= seen + 2
