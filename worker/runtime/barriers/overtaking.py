"""Which barriers overtake the batches queued in front of them at one task, and what they overtook.

A barrier overtakes the batches queued before it on its channel (never an earlier event) when it
is unaligned, when its checkpoint already became unaligned at this task (``overtake``), or when
it was queued for the aligned-checkpoint timeout (``expire``: as in Flink the timeout runs from
the barrier's arrival in the input, not from when the task reaches it behind the queued batches).
The batches it overtook are still processed after it, and are in-flight data of its checkpoint:
they are kept here per (channel, checkpoint) until ``InputBarriers`` takes them for the capture.

The gate calls ``queued`` for every barrier pushed on a channel (it is the gate's
``BarrierListener``); the task passes ``accepts`` to ``InputGate.take_head_barrier``.
"""

from __future__ import annotations

from typing import Any

from streamjob.worker.protocol.events import Barrier
from streamjob.worker.runtime.channels import InputChannel, InputGate
from streamjob.worker.runtime.clock import Clock


class Overtaking:
    """The overtaking state of one task's input gate."""

    def __init__(self, gate: InputGate, clock: Clock) -> None:
        self.gate = gate
        self.clock = clock
        self.checkpoints: set[int] = set()  # checkpoints whose barriers overtake queued batches at this task
        self.announced: dict[int, float] = {}  # checkpoint -> when its first barrier was queued (monotonic s)
        self._overtaken: dict[tuple[int, int], list[list[Any]]] = {}  # (channel, checkpoint) -> batches

    def accepts(self, barrier: Barrier) -> bool:
        """Whether ``barrier``, at the head of a channel, is taken before the other channels' items."""
        return barrier.unaligned or barrier.id in self.checkpoints

    def queued(self, channel: InputChannel, barrier: Barrier) -> None:
        """A barrier was queued on ``channel``: an overtaking one moves to the front, an aligned one is announced."""
        if (barrier.unaligned or barrier.id in self.checkpoints) and len(channel) > 1:
            self._move(channel, barrier.id, mark_unaligned=False)
        elif barrier.savepoint_dir is None:  # savepoints are always aligned: no timeout
            self.announced.setdefault(barrier.id, self.clock.monotonic())

    def overtake(self, checkpoint_id: int, channels: frozenset[int]) -> None:
        """``checkpoint_id`` became unaligned here: its barriers on ``channels`` overtake queued batches."""
        self.checkpoints.add(checkpoint_id)
        for index in channels:
            self._move(self.gate.channels[index], checkpoint_id, mark_unaligned=False)

    def expire(self, timeout_s: float) -> None:
        """Barriers queued for ``timeout_s`` become unaligned and overtake the batches before them."""
        now = self.clock.monotonic()
        for checkpoint_id, since in list(self.announced.items()):
            if now - since >= timeout_s:
                del self.announced[checkpoint_id]
                self.checkpoints.add(checkpoint_id)
                for channel in self.gate.channels:
                    self._move(channel, checkpoint_id, mark_unaligned=True)
                self.gate.wake()

    def overtook_rest(self, channel: int, checkpoint_id: int, rest: list[Any]) -> None:
        """The barrier, taken between two slices of ``channel``'s batch, overtook the rest of that batch too."""
        key = (channel, checkpoint_id)
        self._overtaken[key] = [rest, *self._overtaken.get(key, [])]

    def take(self, channel: int, checkpoint_id: int) -> list[list[Any]]:
        """The batches barrier ``checkpoint_id`` overtook on ``channel`` (forgotten here), in queue order."""
        return self._overtaken.pop((channel, checkpoint_id), [])

    def forget(self, checkpoint_id: int) -> None:
        """The checkpoint was aborted: its barriers no longer overtake nor time out."""
        self.checkpoints.discard(checkpoint_id)
        self.announced.pop(checkpoint_id, None)

    def _move(self, channel: InputChannel, checkpoint_id: int, *, mark_unaligned: bool) -> None:
        overtaken = channel.move_to_front(checkpoint_id, mark_unaligned=mark_unaligned)
        if overtaken:
            self._overtaken[(channel.index, checkpoint_id)] = overtaken


__all__ = ["Overtaking"]
