"""A task's barrier handling on its inputs: the one owner of alignment and unaligned-checkpoint state.

Flink splits this between ``CheckpointedInputGate`` and ``SingleCheckpointBarrierHandler``; here
``InputBarriers`` is the task's single entry point for the barriers and ends of stream it takes
out of its ``InputGate``, and the ``BarrierHost`` of the pure state machine that decides
(``handlers.py``). It owns:

- the handler (aligned/unaligned for EXACTLY_ONCE, the non-blocking tracker for AT_LEAST_ONCE);
- the overtaking state (``overtaking.py``): announcements and the aligned timeout (in effect only
  with unaligned checkpoints enabled, as in Flink), barriers that
  overtake queued batches, and the batches they overtook;
- the in-flight captures of unaligned checkpoints (``in_flight.py``), filled with the overtaken
  batches and with what the task processes from a channel before its barrier arrives;
- the alignment time of each checkpoint (first barrier seen → snapshot).

It asks the gate only for primitives (block, unblock, move a barrier to the front) and hands each
snapshot to a ``CheckpointTarget`` (``SubtaskCheckpointer``) with its alignment time and capture.
Every time comes from the injected clock. Called by ``runtime/task.py``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

from streamjob.worker.config import CheckpointingMode, CheckpointSettings
from streamjob.worker.protocol.events import Barrier
from streamjob.worker.runtime.barriers.handlers import AlignedBarrierHandler, AtLeastOnceBarrierTracker
from streamjob.worker.runtime.barriers.in_flight import InFlightCapture
from streamjob.worker.runtime.barriers.overtaking import Overtaking
from streamjob.worker.runtime.channels import InputGate
from streamjob.worker.runtime.clock import Clock


class CheckpointTarget(Protocol):
    """Who takes the snapshot the inputs decided on (``SubtaskCheckpointer``)."""

    def checkpoint(self, barrier: Barrier, alignment_s: float, capture: InFlightCapture | None) -> bool:
        """Snapshot now and forward ``barrier``; False if the snapshot failed (and was declined)."""
        ...

    def decline_subsumed(self, checkpoint_id: int) -> None:
        """A newer checkpoint overtook ``checkpoint_id`` at this task: it will not complete here."""
        ...


class InputBarriers:
    """Barriers, alignment, overtaking and in-flight capture of one task's input gate."""

    def __init__(self, gate: InputGate, settings: CheckpointSettings, target: CheckpointTarget, clock: Clock) -> None:
        self.gate = gate
        self.target = target
        self.clock = clock
        self.overtaking = Overtaking(gate, clock)
        gate.listener = self.overtaking
        #: The predicate the task passes to ``InputGate.take_head_barrier``.
        self.accepts = self.overtaking.accepts
        # As in Flink, the aligned-checkpoint timeout only applies with unaligned checkpoints enabled:
        # without them every checkpoint stays aligned however long its alignment takes.
        timeout_ms = settings.effective_aligned_timeout_ms
        #: Whether the task should call ``check_timeouts`` (an aligned-checkpoint timeout is in effect).
        self.times_out = timeout_ms > 0
        self._timeout_s = timeout_ms / 1000
        #: Checkpoint -> its in-flight capture, while some channel's barrier has not arrived. The task
        #: checks it (truthiness) before calling ``capture`` for a slice; never replaced, only mutated.
        self.captures: dict[int, InFlightCapture] = {}
        self._first_seen: dict[int, float] = {}
        channels = len(gate.channels)
        if settings.mode is CheckpointingMode.AT_LEAST_ONCE:
            self.handler: AlignedBarrierHandler | AtLeastOnceBarrierTracker = AtLeastOnceBarrierTracker(self, channels)
        else:
            # Each barrier says whether it is unaligned (savepoints never are, as in Flink).
            self.handler = AlignedBarrierHandler(self, channels, timeout_ms)

    # -- what the task feeds in ------------------------------------------------------------------------
    def on_barrier(self, channel: int, barrier: Barrier, *, overtook: bool = False) -> None:
        """``barrier`` was taken from ``channel``; ``overtook``: by ``take_head_barrier`` (it is unaligned now)."""
        if overtook and not barrier.unaligned:
            barrier = replace(barrier, unaligned=True)
        self._first_seen.setdefault(barrier.id, self.clock.monotonic())
        self.handler.on_barrier(channel, barrier, self.clock.now_ms())
        self.overtaking.take(channel, barrier.id)  # batches of a barrier the handler ignored: not in flight

    def overtook_rest(self, channel: int, checkpoint_id: int, rest: list[Any]) -> None:
        """A barrier taken between two slices of ``channel``'s batch overtook the rest of that batch."""
        self.overtaking.overtook_rest(channel, checkpoint_id, rest)

    def on_end_of_stream(self, channel: int) -> None:
        """``channel`` delivers nothing more, barriers included."""
        self.handler.on_end_of_stream(channel)

    def capture(self, channel: int, records: list[Any]) -> None:
        """``records`` of ``channel`` are being processed: in flight for the captures still waiting for it."""
        for capture in self.captures.values():
            if channel in capture.waiting:
                capture.add(records)

    def check_timeouts(self) -> None:
        """Switches alignments, and barriers queued behind batches, to unaligned after the aligned timeout.

        Nothing without a timeout in effect (none set, or unaligned checkpoints off: as in Flink).
        """
        if not self.times_out:
            return
        if self.handler.aligning:
            self.handler.check_timeout(self.clock.now_ms())
        if self.overtaking.announced:
            self.overtaking.expire(self._timeout_s)

    def abort(self, checkpoint_id: int) -> None:
        """The coordinator aborted the checkpoint: release alignment, stop capturing and overtaking for it."""
        self.handler.abort(checkpoint_id)
        self.overtaking.forget(checkpoint_id)
        capture = self.captures.pop(checkpoint_id, None)
        if capture is not None:
            capture.end_all()

    def end_all(self) -> None:
        """No more barriers will come (the task ends): every capture is complete as it is."""
        for capture in self.captures.values():
            capture.end_all()
        self.captures.clear()

    # -- BarrierHost: what the handler decided ---------------------------------------------------------
    def block(self, channel: int) -> None:
        self.gate.block(channel)

    def unblock_all(self) -> None:
        self.gate.unblock_all()

    def snapshot(self, barrier: Barrier, capture: frozenset[int]) -> None:
        """Hands the snapshot to the target; an unaligned one gets its capture and its barriers overtake."""
        now = self.clock.monotonic()
        alignment_s = now - self._first_seen.pop(barrier.id, now)
        self.overtaking.announced.pop(barrier.id, None)
        # The channels not captured delivered their barrier: what those barriers overtook is in flight.
        overtaken = [
            batch
            for index in range(len(self.gate.channels))
            if index not in capture
            for batch in self.overtaking.take(index, barrier.id)
        ]
        in_flight = InFlightCapture(capture, overtaken) if capture or overtaken else None
        if not self.target.checkpoint(barrier, alignment_s, in_flight) or in_flight is None:
            return
        if capture:
            # Unaligned from here on: the barriers still to come on ``capture`` overtake queued batches.
            self.overtaking.overtake(barrier.id, capture)
        if not in_flight.complete:
            self.captures[barrier.id] = in_flight

    def end_capture(self, checkpoint_id: int, channel: int) -> None:
        """``channel``'s barrier arrived (or it ended): with what that barrier overtook, its capture is complete."""
        overtaken = self.overtaking.take(channel, checkpoint_id)
        capture = self.captures.get(checkpoint_id)
        if capture is None:
            return
        for batch in overtaken:
            capture.add(batch)
        capture.end(channel)
        if capture.complete:
            del self.captures[checkpoint_id]
            self.overtaking.checkpoints.discard(checkpoint_id)

    def cancel_alignment(self, checkpoint_id: int) -> None:
        self.overtaking.checkpoints.discard(checkpoint_id)
        capture = self.captures.pop(checkpoint_id, None)
        if capture is not None:
            capture.end_all()
        self.target.decline_subsumed(checkpoint_id)


__all__ = ["CheckpointTarget", "InputBarriers"]
