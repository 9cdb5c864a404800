"""Channels between tasks with credit-based flow control, the input gate, and partitioners.

A producer may only send a data batch on a channel while it holds a credit; the consumer
returns one credit per batch it has taken out of the channel. A slow consumer therefore stalls
its producers (backpressure) instead of buffering without bound: at most ``CREDITS`` batches
wait per channel. Barriers and end-of-stream need no credit. With buffer debloating
(``debloat.py``) a channel also caps its batches so that those batches hold about a second of its
consumer's throughput, splitting a larger one. Used by ``task`` (both ends) and by ``network``
(which carries remote channels over TCP).
"""

from __future__ import annotations

import asyncio
import itertools
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from streamjob.worker.config import BufferDebloat
from streamjob.worker.graph.transformations import Partitioning
from streamjob.worker.protocol.events import Barrier, StreamEvent
from streamjob.worker.runtime.clock import SYSTEM_CLOCK, Clock
from streamjob.worker.runtime.debloat import Debloater
from streamjob.worker.state.key_groups import KeyGroupAssigner, operator_index_for

CREDITS = 8
_NO_LIMIT = 1 << 62

ChannelKey = tuple[int, int, int]  # (edge number in the job graph, producer subtask, consumer subtask)


class BarrierListener(Protocol):
    """Told of every barrier queued on a channel (``barriers.overtaking.Overtaking``)."""

    def queued(self, channel: InputChannel, barrier: Barrier) -> None:
        """``barrier`` was just appended to ``channel``; the listener may move it to the front."""
        ...


class _NoListener:
    def queued(self, channel: InputChannel, barrier: Barrier) -> None:
        pass


class InputChannel:
    """The consumer's end of one channel: a queue of batches and events."""

    __slots__ = ("blocked", "finished", "gate", "index", "items", "key", "return_credit")

    def __init__(self, key: ChannelKey, index: int, gate: InputGate) -> None:
        self.key = key
        self.index = index
        self.gate = gate
        self.items: deque[Any] = deque()
        self.blocked = False
        self.finished = False
        self.return_credit: Callable[[int], None] | None = None

    def __len__(self) -> int:
        """Items queued."""
        return len(self.items)

    def push(self, item: Any) -> None:
        """Called by the producer side (local) or the network reader (remote).

        A barrier is shown to the gate's listener, which decides whether it overtakes the batches
        queued before it (``move_to_front``).
        """
        self.items.append(item)
        if type(item) is Barrier:
            self.gate.listener.queued(self, item)
        if not self.blocked:
            self.gate.wake()

    def move_to_front(self, checkpoint_id: int, *, mark_unaligned: bool = False) -> list[list[Any]] | None:
        """Moves barrier ``checkpoint_id`` in front of the batches queued before it (never of an earlier event).

        Returns the batches it overtook, in queue order ([] when none), or None when the barrier is
        not queued here. ``mark_unaligned``: the queued barrier becomes an unaligned one.
        """
        items = self.items
        position = len(items) - 1
        while position >= 0:
            item = items[position]
            if type(item) is Barrier and item.id == checkpoint_id:
                break
            position -= 1
        else:
            return None
        barrier: Barrier = items[position]
        stop = position
        while stop > 0 and type(items[stop - 1]) is list:
            stop -= 1
        overtaken = [items[i] for i in range(stop, position)]
        if overtaken:
            del items[position]
            items.insert(stop, barrier)
        if mark_unaligned:
            items[stop] = replace(barrier, unaligned=True)
        return overtaken


class InputGate:
    """All input channels of a task; hands out items fairly from channels that are not blocked.

    Primitives only — poll, block, unblock, move a barrier to the front (``InputChannel``), take a
    barrier at a channel's head; what overtakes what, and when, is decided in ``runtime/barriers/``.
    """

    def __init__(self) -> None:
        self.channels: list[InputChannel] = []
        # Set by the task's barrier package when the task is built, before the attempt starts and any
        # producer can push (a slot registers its channels in ``deploy``, producers connect in ``start``).
        self.listener: BarrierListener = _NoListener()
        self._event = asyncio.Event()
        self._next = 0

    def add_channel(self, key: ChannelKey) -> InputChannel:
        """Registers a channel; its index is its position in ``channels``."""
        channel = InputChannel(key, len(self.channels), self)
        self.channels.append(channel)
        return channel

    def wake(self) -> None:
        """Signals that an item may be available."""
        self._event.set()

    def poll(self) -> tuple[InputChannel, Any] | None:
        """The next item of an unblocked channel, round robin, or None when none is ready."""
        channels = self.channels
        n = len(channels)
        start = self._next
        for offset in range(n):
            channel = channels[(start + offset) % n]
            if channel.items and not channel.blocked:
                item = channel.items.popleft()
                self._next = (channel.index + 1) % n
                if type(item) is list and channel.return_credit is not None:
                    channel.return_credit(1)
                return channel, item
        return None

    def take_head_barrier(self, accept: Callable[[Barrier], bool]) -> tuple[InputChannel, Barrier] | None:
        """Takes a barrier that ``accept`` admits from the head of an unblocked channel, or None.

        The task asks before every item and between two slices of a batch, so that a barrier that
        overtook the queued batches does not wait behind another channel's or the batch in progress.
        """
        for channel in self.channels:
            items = channel.items
            if items and not channel.blocked:
                head = items[0]
                if type(head) is Barrier and accept(head):
                    items.popleft()
                    return channel, head
        return None

    async def wait(self, timeout: float, woken: Callable[[], bool]) -> None:
        """Returns when an item may be ready, ``wake`` was called, ``woken()`` is true, or after ``timeout`` s.

        Takes no item (the caller polls), so nothing is lost if the caller stops waiting: a task
        waiting for input and for another event too (async I/O results) waits here.
        """
        self._event.clear()
        if woken() or any(c.items and not c.blocked for c in self.channels):
            return
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            pass

    async def next(self, timeout: float | None = None) -> tuple[InputChannel, Any] | None:
        """Waits for the next item; None after ``timeout`` seconds without one."""
        while True:
            found = self.poll()
            if found is not None:
                return found
            self._event.clear()
            found = self.poll()
            if found is not None:
                return found
            if timeout is None:
                await self._event.wait()
            else:
                try:
                    await asyncio.wait_for(self._event.wait(), timeout)
                except TimeoutError:
                    return None

    def block(self, index: int) -> None:
        """Holds channel ``index`` back (barrier alignment)."""
        self.channels[index].blocked = True

    def unblock_all(self) -> None:
        """Releases every blocked channel."""
        woke = False
        for channel in self.channels:
            if channel.blocked:
                channel.blocked = False
                woke = woke or bool(channel.items)
        if woke:
            self.wake()

    def open_channels(self) -> list[InputChannel]:
        """Channels that have not ended."""
        return [c for c in self.channels if not c.finished]


class OutputChannel(ABC):
    """The producer's end of one channel."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self.credits = CREDITS
        self._credit_event = asyncio.Event()
        self.backpressured_s = 0.0  # ended waits for credit; see ``backpressured_total_s``
        self._blocked_since: float | None = None
        self.closed = False
        self.batch_limit = _NO_LIMIT  # records per batch; a larger batch is split (buffer debloating)
        self.debloater: Debloater | None = None

    def enable_debloating(self, settings: BufferDebloat, max_batch: int) -> None:
        """Caps batches to about ``settings.target_ms`` of the consumer's throughput per credit window."""
        self.debloater = Debloater(settings, credits=CREDITS, max_batch=max_batch, now=self.clock.monotonic())
        self.batch_limit = self.debloater.limit

    def close(self) -> None:
        """The task is ending: a send waiting for credit returns, and later sends are dropped."""
        self.closed = True
        self._credit_event.set()

    def add_credit(self, n: int) -> None:
        """The consumer took ``n`` batches."""
        self.credits += n
        debloater = self.debloater
        if debloater is not None:
            debloater.taken(n, self.clock.monotonic())
            self.batch_limit = debloater.limit
        self._credit_event.set()

    async def send_batch(self, batch: list[Any]) -> None:
        """Sends a batch, waiting for a credit first (backpressure); one credit per ``batch_limit`` records."""
        if len(batch) > self.batch_limit:
            await self._send_in_pieces(batch)
            return
        if self.credits <= 0:
            self._blocked_since = started = self.clock.monotonic()
            try:
                while self.credits <= 0 and not self.closed:
                    self._credit_event.clear()
                    await self._credit_event.wait()
            finally:
                self._blocked_since = None
                self.backpressured_s += self.clock.monotonic() - started
        if self.closed:
            return
        self.credits -= 1
        self._deliver(batch)
        if self.debloater is not None:
            self.debloater.sent(len(batch), self.clock.monotonic)

    async def _send_in_pieces(self, batch: list[Any]) -> None:
        start, n = 0, len(batch)
        while start < n and not self.closed:
            limit = self.batch_limit  # may change while a piece waits for credit
            await self.send_batch(batch[start : start + limit])
            start += limit

    def backpressured_total_s(self) -> float:
        """Time spent waiting for credit, a wait still in progress included (a stuck consumer shows at once)."""
        since = self._blocked_since
        return self.backpressured_s if since is None else self.backpressured_s + self.clock.monotonic() - since

    @abstractmethod
    def _deliver(self, batch: list[Any]) -> None: ...

    @abstractmethod
    def send_event(self, event: StreamEvent) -> None:
        """Sends an event without waiting for credit."""


class LocalOutputChannel(OutputChannel):
    """A channel to a task in the same process: batches are handed over as objects."""

    def __init__(self, target: InputChannel, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(clock)
        self.target = target
        target.return_credit = self.add_credit

    def _deliver(self, batch: list[Any]) -> None:
        self.target.push(batch)

    def send_event(self, event: StreamEvent) -> None:
        self.target.push(event)


class RecordWriter:
    """Partitions a task's output batches over the channels of one output edge."""

    def __init__(
        self,
        channels: list[OutputChannel],
        partitioning: Partitioning,
        key_selector: Any,
        max_parallelism: int,
        producer_index: int,
    ) -> None:
        self.channels = channels
        self.partitioning = partitioning
        self.key_selector = key_selector
        self._n = len(channels)
        self._rr = itertools.cycle(range(max(1, self._n)))
        for _ in range(producer_index % max(1, self._n)):
            next(self._rr)
        self._producer_index = producer_index
        self._assigner = KeyGroupAssigner(max_parallelism)
        self._max_parallelism = max_parallelism
        self._target_of_key: dict[Any, int] = {}

    async def emit(self, batch: list[Any]) -> None:
        """Sends ``batch`` to the channel(s) its partitioning selects."""
        if not batch:
            return
        n = self._n
        if n == 1:
            await self.channels[0].send_batch(batch)
            return
        p = self.partitioning
        if p is Partitioning.HASH:
            await self._emit_hashed(batch)
        elif p is Partitioning.BROADCAST:
            for channel in self.channels:
                await channel.send_batch(list(batch))
        elif p is Partitioning.FORWARD:
            await self.channels[self._producer_index % n].send_batch(batch)
        else:
            await self.channels[next(self._rr)].send_batch(batch)

    async def _emit_hashed(self, batch: list[Any]) -> None:
        """Splits ``batch`` by its keys' channels in one loop (map/compress passes measured slower).

        The key's channel is a subscript of the cache (a specialised opcode, unlike ``cache.get``'s
        method call); a key not cached yet raises KeyError once, an unhashable one TypeError (turned
        into the PipelineError naming the fix). The selector is called outside the ``try``, so the
        user function's own KeyError or TypeError is never taken for a miss.
        """
        parts: list[list[Any]] = [[] for _ in range(self._n)]
        appends = [part.append for part in parts]
        cache = self._target_of_key
        select = self.key_selector
        for record in batch:
            key = select(record)
            try:
                appends[cache[key]](record)
            except (KeyError, TypeError):
                appends[self._target_for(key)](record)
        for channel, part in zip(self.channels, parts, strict=True):
            if part:
                await channel.send_batch(part)

    def _target_for(self, key: Any) -> int:
        group = self._assigner.assign(key)
        target = operator_index_for(group, self._max_parallelism, self._n)
        if len(self._target_of_key) < 1_000_000:
            self._target_of_key[key] = target
        return target

    def debloat(self, settings: BufferDebloat, max_batch: int) -> None:
        """Turns buffer debloating on for every channel (``debloat.py``)."""
        for channel in self.channels:
            channel.enable_debloating(settings, max_batch)

    def batch_hint(self) -> int:
        """Records a task should emit at once so that sending them needs at most one credit per channel.

        The smallest cap of the channels: keys may all go to the slowest consumer (and rebalance
        sends a whole batch to one channel), so a larger batch could wait for several of its credits.
        """
        channels = self.channels
        if self.partitioning is Partitioning.FORWARD:
            return channels[self._producer_index % self._n].batch_limit
        return min(c.batch_limit for c in channels)

    def broadcast_event(self, event: StreamEvent) -> None:
        """Sends an event on every channel."""
        for channel in self.channels:
            channel.send_event(event)

    def close(self) -> None:
        """Releases every channel (see ``OutputChannel.close``)."""
        for channel in self.channels:
            channel.close()

    def backpressured_s(self) -> float:
        """Total time this writer waited for credits (local and remote channels alike)."""
        return sum(c.backpressured_total_s() for c in self.channels)
