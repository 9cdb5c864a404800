"""The in-flight data of one unaligned checkpoint at one task (Flink's channel state, input side).

When a task takes an unaligned snapshot, the records still in flight on the inputs belong to the
checkpoint: the batches its barriers overtook in the queues (and the rest of the batch in
progress), and everything processed from a channel before that channel's barrier arrives.
``InputBarriers`` (``controller.py``) fills an ``InFlightCapture`` with them, in processing order,
and ends a channel when its barrier (or its end of stream) arrives; ``SubtaskCheckpointer`` waits
for ``done`` and writes ``records`` with the checkpoint, to be replayed first on restore.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


class InFlightCapture:
    """The captured records of one checkpoint, and the channels whose barrier has not arrived yet."""

    __slots__ = ("done", "records", "waiting")

    def __init__(self, channels: Iterable[int], overtaken: Iterable[list[Any]] = ()) -> None:
        """``channels``: whose records are captured until their barrier; ``overtaken``: batches already captured."""
        self.waiting = set(channels)
        self.records: list[Any] = []
        for batch in overtaken:
            self.records.extend(batch)
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self.waiting:
            self.done.set_result(None)

    @property
    def complete(self) -> bool:
        """Whether every channel delivered its barrier (or the capture was ended)."""
        return self.done.done()

    def add(self, records: list[Any]) -> None:
        """Records processed from a channel in ``waiting`` (or overtaken by a barrier) belong to the checkpoint."""
        self.records.extend(records)

    def end(self, channel: int) -> None:
        """``channel`` delivered its barrier or ended: nothing more of it belongs to the checkpoint."""
        self.waiting.discard(channel)
        if not self.waiting and not self.done.done():
            self.done.set_result(None)

    def end_all(self) -> None:
        """The checkpoint was aborted or the task ends: stop waiting for the other barriers."""
        self.waiting.clear()
        if not self.done.done():
            self.done.set_result(None)


__all__ = ["InFlightCapture"]
