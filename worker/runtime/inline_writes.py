"""Whether a task writes a prepared snapshot itself or hands it to the slot's I/O thread.

Handing a snapshot to a thread costs far more than the I/O when the snapshot is small and the
disk is local. Under the GIL, every system call of the thread (open, write, fsync, close, and one
fsync per new directory: ~25 for one subtask's files) gives the interpreter back to the busy task
thread and waits up to a switch interval to get it again; the finished upload then waits for the
task's loop to notice it. Measured with 10,000 keys (~100 KB) at parallelism 1: 6-12 ms on the
thread and 2-4 ms to be noticed, against ~1 ms to write and fsync the same files on the task
thread; when other processes keep the CPUs busy, each hand-off can wait a scheduler time slice.

So a snapshot to a local file system (``file://``; not a savepoint, not S3) that is known to be
small is written and synced on the task thread, between two batches; a large one, one of unknown
size (RocksDB, incremental), and every snapshot while the disk is slow go to the thread, so that
processing never stalls long behind a slow disk (an NFS mount, a busy device). "Slow" is what
this slot measured: its recent inline writes took more than ``max_seconds`` on average (a moving
average, so that one slow fsync among fast ones does not count; on a local SSD a write with its
fsyncs takes 1-4 ms). A slow disk is probed again every ``probe_every`` snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Larger snapshots always go to the I/O thread (1 MiB: well under a millisecond to copy to the page cache).
INLINE_MAX_BYTES = 1 << 20
#: The average duration of recent inline writes above which the disk counts as slow (1 % of a 1 s interval).
INLINE_MAX_SECONDS = 0.010
#: Weight of the newest duration in the moving average.
_WEIGHT = 0.25


@dataclass
class InlineWritePolicy:
    """The decision of one slot; used from its event loop only (not thread-safe)."""

    local_disk: bool
    max_bytes: int = INLINE_MAX_BYTES
    max_seconds: float = INLINE_MAX_SECONDS
    probe_every: int = 16
    average_s: float | None = None
    _deferred: int = 0

    def inline(self, size: int | None, *, savepoint: bool) -> bool:
        """Whether the task should write a prepared snapshot of ``size`` bytes (None: unknown) itself."""
        if not self.local_disk or savepoint or size is None or size > self.max_bytes:
            return False
        if self.average_s is None or self.average_s <= self.max_seconds:
            return True
        self._deferred += 1
        if self._deferred >= self.probe_every:
            self._deferred = 0
            return True
        return False

    def record(self, seconds: float) -> None:
        """An inline write (and sync) took ``seconds``."""
        self.average_s = seconds if self.average_s is None else (1 - _WEIGHT) * self.average_s + _WEIGHT * seconds


__all__ = ["INLINE_MAX_BYTES", "INLINE_MAX_SECONDS", "InlineWritePolicy"]
