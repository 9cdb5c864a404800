"""Buffer debloating: the in-flight data of a channel bounded by time instead of by count.

A channel's credit window is ``CREDITS`` batches. With fixed batches of ``env.set_buffer_size``
records, a slow consumer queues 8 × 4,096 records per channel, and an aligned barrier waits behind
all of them (a sink needing 1 ms per record: tens of seconds). As Flink's
``taskmanager.network.memory.buffer-debloat`` does, each channel measures how fast its consumer
takes batches and caps the records per batch so that a full credit window holds about
``target_ms`` of that throughput; backpressure then reaches the producers within about that time.

Measured per batch, never per record: the producer notes each batch it sends and each credit
that returns (the consumer took the oldest outstanding batch). The throughput is records taken
per second of *busy* time, when the channel had batches outstanding, so a consumer waiting for
this producer counts as fast (its capacity, not the producer's rate) and the cap stays at the
configured batch size. Samples of ``period_ms`` are smoothed (moving average) before
``batch_limit`` (pure) turns them into a cap. A channel starts with small batches, so that a slow
consumer never gets a bloated queue to begin with, and takes its first sample after 10 ms (from the
first returned credit on: an idle consumer takes the first batch at once, which says nothing about
its speed), so that a fast one gets full batches almost at once.

Callers: ``channels.OutputChannel`` (one ``Debloater`` per channel when enabled), the task's
source poll size and input slices (``RecordWriter.batch_hint``); unit tests.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from streamjob.worker.config import BufferDebloat

_WEIGHT = 0.3  # of a new sample in the moving average: ~3 samples to follow a change of speed
_FIRST_PERIOD_S = 0.01
_FIRST_LIMIT = 16  # records per batch until the first sample


def batch_limit(records_per_s: float, *, target_s: float, credits: int, min_batch: int, max_batch: int) -> int:
    """Records per batch so that ``credits`` batches hold about ``target_s`` of ``records_per_s``.

    Never below ``min_batch`` (per-batch costs would dominate) nor above ``max_batch`` (the
    configured buffer size, which also holds when the consumer keeps up).
    """
    upper = max(1, max_batch)
    lower = max(1, min(min_batch, upper))
    if records_per_s <= 0:
        return lower
    wanted = int(records_per_s * target_s / max(1, credits))
    return max(lower, min(upper, wanted))


class Debloater:
    """One output channel's throughput estimate and batch cap (see the module docstring)."""

    __slots__ = (
        "_busy_s",
        "_busy_since",
        "_credits",
        "_last",
        "_max",
        "_outstanding",
        "_period_s",
        "_rate",
        "_settings",
        "_taken",
        "limit",
    )

    def __init__(self, settings: BufferDebloat, *, credits: int, max_batch: int, now: float) -> None:
        self._settings = settings
        self._credits = credits
        self._max = max_batch
        self._outstanding: deque[int] = deque()  # records of the batches sent and not taken yet, oldest first
        self._busy_since: float | None = None
        self._busy_s = 0.0
        self._taken = 0
        self._last = now
        self._rate: float | None = None
        self._period_s: float | None = None  # None until the first credit came back
        # Start small: a consumer that turns out to be slow then never queued more than the target,
        # and a fast one lifts the cap after the first period.
        self.limit = max(settings.min_batch_size, min(_FIRST_LIMIT, max_batch))

    @property
    def records_per_s(self) -> float | None:
        """The smoothed throughput of the consumer on this channel (None before the first sample)."""
        return self._rate

    def sent(self, records: int, clock: Callable[[], float]) -> None:
        """A batch of ``records`` went out (the clock is read only when the channel becomes busy)."""
        if not self._outstanding:
            self._busy_since = clock()
        self._outstanding.append(records)

    def taken(self, batches: int, now: float) -> None:
        """The consumer took ``batches`` (credits came back); updates ``limit`` once per period."""
        outstanding = self._outstanding
        for _ in range(min(batches, len(outstanding))):
            self._taken += outstanding.popleft()
        since = self._busy_since
        if not outstanding and since is not None:
            self._busy_s += now - since
            self._busy_since = None
        if self._period_s is None:  # the first credit starts the measurement
            self._period_s = min(_FIRST_PERIOD_S, self._settings.period_ms / 1000)
            self._busy_s, self._taken, self._last = 0.0, 0, now
            if self._busy_since is not None:
                self._busy_since = now
            return
        if now - self._last < self._period_s:
            return
        self._period_s = self._settings.period_ms / 1000
        busy = self._busy_s
        if self._busy_since is not None:
            busy += now - self._busy_since
            self._busy_since = now
        if busy > 0 and self._taken:
            sample = self._taken / busy
            self._rate = sample if self._rate is None else self._rate + _WEIGHT * (sample - self._rate)
            self.limit = batch_limit(
                self._rate,
                target_s=self._settings.target_ms / 1000,
                credits=self._credits,
                min_batch=self._settings.min_batch_size,
                max_batch=self._max,
            )
        self._busy_s = 0.0
        self._taken = 0
        self._last = now


__all__ = ["Debloater", "batch_limit"]
