"""The checkpoint lock of a push-style (legacy) source: reentrant, and the task's turn comes first.

A ``SourceFunction`` emits inside ``with ctx.get_checkpoint_lock():`` on its own thread, often in a
tight loop, and sometimes sleeps while holding it (the seed's ``SensorSource`` sleeps one second per
reading inside the lock). A plain ``RLock`` hands the lock straight back to that thread, so the task
could wait seconds for it, and it waited on the slot's event loop, stalling every task of the slot.

Here the task never blocks to drain records: ``try_acquire_for_task`` takes the lock if it is free or
else raises a flag that makes the source thread's next ``acquire`` wait until the task has had its
turn. Only a snapshot (``acquire_for_task``) waits, for at most the rest of the source's current hold.
``wait_for_space`` is the source side's backpressure wait: it gives the lock up completely (at any
depth of nesting), waits for a drain, and takes it back at the same depth.
Used by ``runtime/source_operators.py`` (``LegacySourceOperator``); users see it as the object
``SourceContext.get_checkpoint_lock()`` returns.
"""

from __future__ import annotations

import threading
from types import TracebackType


class CheckpointLock:
    """A reentrant lock whose owner is a thread; the task thread goes before the source thread."""

    def __init__(self) -> None:
        self._state = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._task_waiting = False

    # -- the source thread (and user code) ----------------------------------------------------------------

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """As ``threading.RLock.acquire``, but yields to a task waiting for its turn."""
        me = threading.get_ident()
        with self._state:
            if self._owner == me:
                self._depth += 1
                return True
            if not blocking and not self._free_for_source():
                return False
            if not self._state.wait_for(self._free_for_source, None if timeout < 0 else timeout):
                return False
            self._owner, self._depth = me, 1
            return True

    def release(self) -> None:
        with self._state:
            if self._owner != threading.get_ident():
                raise RuntimeError("cannot release a checkpoint lock this thread does not hold")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._state.notify_all()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()

    def wait_for_space(self, timeout: float) -> None:
        """Gives the lock up entirely until the task's next release (a drain) or ``timeout``, then takes it back."""
        me = threading.get_ident()
        with self._state:
            if self._owner != me:
                raise RuntimeError("wait_for_space needs the checkpoint lock")
            depth, self._owner, self._depth = self._depth, None, 0
            self._state.notify_all()
            self._state.wait(timeout)
            self._state.wait_for(self._free_for_source)
            self._owner, self._depth = me, depth

    def _free_for_source(self) -> bool:
        return self._owner is None and not self._task_waiting

    # -- the task thread ----------------------------------------------------------------------------------

    def try_acquire_for_task(self) -> bool:
        """Takes the lock if it is free; otherwise asks the source thread to let the task go next."""
        me = threading.get_ident()
        with self._state:
            if self._owner == me:
                self._depth += 1
                return True
            if self._owner is None:
                self._owner, self._depth, self._task_waiting = me, 1, False
                return True
            self._task_waiting = True
            return False

    def acquire_for_task(self) -> None:
        """Waits for the lock (the source thread's current hold at most) and takes it before the source."""
        me = threading.get_ident()
        with self._state:
            if self._owner == me:
                self._depth += 1
                return
            self._task_waiting = True
            self._state.wait_for(lambda: self._owner is None)
            self._owner, self._depth, self._task_waiting = me, 1, False

    def withdraw(self) -> None:
        """The task will not come back for its turn (it is closing): the source thread may go on."""
        with self._state:
            self._task_waiting = False
            self._state.notify_all()
