"""The barrier decisions on a task's inputs: aligned, unaligned, and at-least-once tracking.

Pure state machines (no sockets, no clock of their own): ``controller.InputBarriers`` feeds them
barriers and end-of-stream per input channel with the time, and carries out what they decide as
their ``BarrierHost`` — block a channel, take the snapshot and forward the barrier, capture
in-flight records of channels whose barrier has not arrived (unaligned), release the channels.

- Aligned (EXACTLY_ONCE): after barrier n arrives on a channel, that channel is blocked until
  every open channel delivered n; then the snapshot is taken. If alignment lasts longer than the
  aligned-checkpoint timeout (counted from the first barrier n at this task), the checkpoint
  switches to unaligned. The controller passes a timeout only with unaligned checkpoints enabled
  (as in Flink), and 0 otherwise: then checkpoints stay aligned.
- Unaligned (EXACTLY_ONCE): the snapshot is taken at the first barrier n; records that arrive on
  the other channels before their barrier n are processed and also stored with the checkpoint.
- At-least-once: nothing is blocked; the snapshot is taken once every channel delivered n.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from streamjob.worker.protocol.events import Barrier


class BarrierHost(Protocol):
    """What a handler asks its task to do."""

    def block(self, channel: int) -> None: ...

    def unblock_all(self) -> None: ...

    def snapshot(self, barrier: Barrier, capture: frozenset[int]) -> None:
        """Snapshot now and forward the barrier; record in-flight data of ``capture`` channels."""
        ...

    def end_capture(self, checkpoint_id: int, channel: int) -> None:
        """``channel`` delivered its barrier (or ended): its in-flight data for the checkpoint is complete."""
        ...

    def cancel_alignment(self, checkpoint_id: int) -> None:
        """A newer barrier overtook this checkpoint at this task; it will not complete here."""
        ...


class AlignedBarrierHandler:
    """EXACTLY_ONCE: aligned barriers, switching to unaligned on timeout or when asked."""

    def __init__(
        self, host: BarrierHost, channels: int, aligned_timeout_ms: int = 0, always_unaligned: bool = False
    ) -> None:
        self.host = host
        self.open: set[int] = set(range(channels))
        self.aligned_timeout_ms = aligned_timeout_ms
        self.always_unaligned = always_unaligned
        self.barrier: Barrier | None = None
        self.received: set[int] = set()
        self.started_ms = 0
        self.snapshotted = False
        self.last_done = -1

    @property
    def aligning(self) -> bool:
        """Whether some channels are blocked waiting for the others."""
        return self.barrier is not None and not self.snapshotted

    def on_barrier(self, channel: int, barrier: Barrier, now_ms: int) -> None:
        """Barrier ``barrier`` arrived on ``channel``."""
        if barrier.id <= self.last_done:
            return
        current = self.barrier
        if current is None or barrier.id > current.id:
            if current is not None:
                self._cancel(current.id)
            self.barrier = barrier
            self.received = set()
            self.started_ms = now_ms
            self.snapshotted = False
            if barrier.unaligned or self.always_unaligned:
                self.received.add(channel)
                self._switch_to_unaligned()
                return
        elif barrier.id < current.id:
            return
        self.received.add(channel)
        if barrier.unaligned and not self.snapshotted:
            # An aligned barrier queued too long became unaligned at the input (aligned timeout).
            self._switch_to_unaligned()
        elif self.snapshotted:
            self.host.end_capture(barrier.id, channel)
            self._maybe_finish()
        elif self.received >= self.open:
            self.host.snapshot(barrier, frozenset())
            self.host.unblock_all()
            self._done()
        else:
            self.host.block(channel)

    def on_end_of_stream(self, channel: int) -> None:
        """``channel`` will deliver nothing more, barriers included."""
        self.open.discard(channel)
        if self.barrier is None:
            return
        if self.snapshotted:
            if channel not in self.received:
                self.received.add(channel)
                self.host.end_capture(self.barrier.id, channel)
            self._maybe_finish()
        elif self.received >= self.open:
            self.host.snapshot(self.barrier, frozenset())
            self.host.unblock_all()
            self._done()

    def check_timeout(self, now_ms: int) -> None:
        """Switches a long alignment to unaligned (``aligned_timeout_ms`` > 0)."""
        if (
            self.aligning
            and self.aligned_timeout_ms > 0
            and now_ms - self.started_ms >= self.aligned_timeout_ms
            and self.barrier is not None
            and self.barrier.savepoint_dir is None
        ):
            self._switch_to_unaligned()

    def abort(self, checkpoint_id: int) -> None:
        """The coordinator aborted the checkpoint: release blocked channels; its late barriers are ignored."""
        if self.barrier is not None and self.barrier.id == checkpoint_id:
            self._cancel(checkpoint_id)
        self.last_done = max(self.last_done, checkpoint_id)

    def _switch_to_unaligned(self) -> None:
        assert self.barrier is not None
        pending = frozenset(self.open - self.received)
        self.snapshotted = True
        # Forwarded as unaligned: downstream tasks let it overtake their queued batches too (as in Flink).
        self.host.snapshot(replace(self.barrier, unaligned=True), pending)
        self.host.unblock_all()
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self.received >= self.open:
            self._done()

    def _cancel(self, checkpoint_id: int) -> None:
        self.last_done = max(self.last_done, checkpoint_id)
        if not self.snapshotted:
            self.host.unblock_all()
        self.host.cancel_alignment(checkpoint_id)
        self.barrier = None
        self.received = set()
        self.snapshotted = False

    def _done(self) -> None:
        assert self.barrier is not None
        self.last_done = self.barrier.id
        self.barrier = None
        self.received = set()
        self.snapshotted = False


class AtLeastOnceBarrierTracker:
    """AT_LEAST_ONCE: count barriers per checkpoint, never block; several checkpoints may overlap."""

    def __init__(self, host: BarrierHost, channels: int) -> None:
        self.host = host
        self.open: set[int] = set(range(channels))
        self.pending: dict[int, tuple[Barrier, set[int]]] = {}
        self.last_done = -1

    def on_barrier(self, channel: int, barrier: Barrier, now_ms: int) -> None:
        """Counts the barrier; snapshots once every open channel delivered it."""
        if barrier.id <= self.last_done:
            return
        _, seen = self.pending.setdefault(barrier.id, (barrier, set()))
        seen.add(channel)
        self._complete_ready()

    def on_end_of_stream(self, channel: int) -> None:
        """``channel`` ended; checkpoints waiting only for it complete."""
        self.open.discard(channel)
        self._complete_ready()

    aligning = False

    def check_timeout(self, now_ms: int) -> None:
        """Nothing ever blocks here."""

    def abort(self, checkpoint_id: int) -> None:
        """Forgets a checkpoint the coordinator aborted; its late barriers are ignored."""
        self.pending.pop(checkpoint_id, None)
        self.last_done = max(self.last_done, checkpoint_id)

    def _complete_ready(self) -> None:
        for cid in sorted(self.pending):
            barrier, seen = self.pending[cid]
            if seen >= self.open:
                del self.pending[cid]
                for older in [c for c in self.pending if c < cid]:
                    del self.pending[older]
                    self.host.cancel_alignment(older)
                self.last_done = cid
                self.host.snapshot(barrier, frozenset())
