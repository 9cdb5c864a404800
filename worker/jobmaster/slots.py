"""The JobMaster's view of its slot processes: registration, messages out, the task gateway.

Each slot holds one authenticated control connection to the JobMaster (``control.py``). Messages
to a slot go out in order through its ``ControlLink``; the registry implements the coordinator's
``TaskGateway``. Slots outlive attempts: when one fails, the survivors are ``release``d (fenced: their
messages are dropped until they answer ``released``), a lost slot's index is freed for its replacement,
and the next attempt deploys to the same registry.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from streamjob.worker.protocol.events import Barrier
from streamjob.worker.protocol.framing import NO_CHANNEL, FrameKind, frame
from streamjob.worker.protocol.messages import Abort, BarrierSpec, Bye, Notify, Ping, Release, ToSlot, Trigger, encode

log = logging.getLogger(__name__)

PING_S = 15.0
"""The JobMaster's heartbeat to each slot while it has nothing else to say."""


class ControlLink:
    """The JobMaster's end of one authenticated control connection: an ordered outbox and its sender."""

    def __init__(self, writer: asyncio.StreamWriter, peer: str) -> None:
        self.writer = writer
        self.peer = peer
        self.outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.sender = asyncio.create_task(self._run_sender())

    def send(self, message: ToSlot) -> None:
        """Queues a message; delivery order is send order."""
        self.outbox.put_nowait(frame(FrameKind.MESSAGE, NO_CHANNEL, encode(message)))

    async def _run_sender(self) -> None:
        ping = frame(FrameKind.MESSAGE, NO_CHANNEL, encode(Ping()))
        while True:
            try:
                data = await asyncio.wait_for(self.outbox.get(), PING_S)
            except TimeoutError:
                data = ping
            if self.writer.is_closing():
                return
            try:
                self.writer.write(data)
                await self.writer.drain()
            except ConnectionError:
                return

    async def close(self, wait_s: float = 1.0) -> None:
        """Lets queued messages (a goodbye) go out for up to ``wait_s``, then closes the connection."""
        for _ in range(int(wait_s / 0.05)):
            if self.outbox.empty():
                break
            await asyncio.sleep(0.05)
        self.sender.cancel()
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)
        except (TimeoutError, ConnectionError):
            log.debug("the slot at %s did not close its connection", self.peer)


@dataclass
class SlotConnection:
    """One registered slot process."""

    index: int
    link: ControlLink
    data_address: tuple[str, int]
    pid: int
    fenced: int | None = None
    """The attempt this slot was released from until it answers ``released`` (its messages are stale)."""

    def send(self, message: ToSlot) -> None:
        """Queues a message; delivery order is send order."""
        self.link.send(message)


@dataclass
class SpareSlot:
    """A slot that registered while the attempt had all its slots: idle until a rescale needs it."""

    link: ControlLink
    data_address: tuple[str, int]
    pid: int
    promoted: SlotConnection | None = None
    """Set when ``SlotRegistry.open_for`` made it a slot (its connection's messages then go to the attempt)."""


class SlotRegistry:
    """The slots of the current attempt."""

    def __init__(self) -> None:
        self.slots: dict[int, SlotConnection] = {}
        self.changed = asyncio.Event()
        self.accepting = 0
        self.opened = asyncio.Event()
        self.spares: dict[ControlLink, SpareSlot] = {}

    def open_for(self, count: int) -> None:
        """Accepts up to ``count`` slots (one attempt's); slots still registered from the last attempt stay.

        Spare slots fill free indices first (a rescale up whose worker pods registered ahead of it).
        """
        self.accepting = count
        self.opened.set()
        self._promote_spares()

    def _promote_spares(self) -> None:
        """Gives free indices to the waiting spares, first registered first."""
        for link, spare in list(self.spares.items()):
            conn = self._assign(link, spare.data_address, spare.pid)
            if conn is None:
                break
            spare.promoted = conn
            del self.spares[link]

    def add_spare(self, link: ControlLink, data_address: tuple[str, int], pid: int) -> SpareSlot:
        """Keeps a slot that found no free index (it idles until ``open_for`` promotes it, or the job ends)."""
        spare = SpareSlot(link, data_address, pid)
        self.spares[link] = spare
        return spare

    async def shrink(self, count: int) -> list[SlotConnection]:
        """Lets the slots of index ``count`` and above go (a rescale down): goodbye, connection closed.

        Returns them (their pids tell a launcher which processes end).
        """
        surplus = [conn for index, conn in sorted(self.slots.items()) if index >= count]
        for conn in surplus:
            conn.send(Bye(outcome="finished"))
            del self.slots[conn.index]  # before any await: its connection may close meanwhile (``remove``)
        for conn in surplus:
            await conn.link.close()
        if surplus:
            self.changed.set()
        return surplus

    @property
    def ready(self) -> int:
        """Registered slots that can take a deployment (not waiting for their tasks of a failed attempt to end)."""
        return sum(1 for conn in self.slots.values() if conn.fenced is None)

    def release(self, attempt: int) -> None:
        """Tells every slot to stop its tasks of the failed ``attempt`` and fences it until it has."""
        for conn in self.slots.values():
            conn.fenced = attempt
            conn.send(Release(attempt=attempt))

    def released(self, conn: SlotConnection, attempt: int) -> None:
        """A slot's tasks of ``attempt`` ended: it takes the next deployment."""
        if conn.fenced == attempt:
            conn.fenced = None
            self.changed.set()

    def remove(self, conn: SlotConnection) -> None:
        """A slot's connection closed: its index is free for a replacement."""
        if self.slots.get(conn.index) is conn:
            del self.slots[conn.index]
            self.changed.set()

    async def wait_released(self, timeout_s: float) -> bool:
        """Waits until no registered slot is fenced; False on timeout (a slot whose tasks do not end)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.ready < len(self.slots):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                return False
        return True

    async def wait_open(self, timeout_s: float) -> None:
        """Holds a slot that connected before the first attempt opened registrations."""
        try:
            await asyncio.wait_for(self.opened.wait(), timeout_s)
        except TimeoutError:
            pass

    async def say_goodbye(self, outcome: str) -> None:
        """Tells every slot, spare ones too, that the job ended (they exit 0 unless it failed)."""
        message = Bye(outcome=outcome)  # type: ignore[arg-type]
        for conn in self.slots.values():
            conn.send(message)
        for link in list(self.spares):
            link.send(message)

    def register(self, link: ControlLink, data_address: tuple[str, int], pid: int) -> SlotConnection | None:
        """Assigns the next free slot index, or None when the attempt has all its slots.

        Waiting spares take free indices first: a failover's replacement that registers during the
        restart delay must not take the lost slot's index from the standby slot, which is ready.
        """
        self._promote_spares()
        return self._assign(link, data_address, pid)

    def _assign(self, link: ControlLink, data_address: tuple[str, int], pid: int) -> SlotConnection | None:
        if len(self.slots) >= self.accepting:
            return None
        index = next(i for i in range(self.accepting) if i not in self.slots)
        conn = SlotConnection(index, link, data_address, pid)
        self.slots[index] = conn
        self.changed.set()
        return conn

    async def wait_for_all(self, count: int, timeout_s: float) -> bool:
        """Waits until ``count`` slots registered and released from any earlier attempt; False on timeout."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.ready < count:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                return False
        return True

    def broadcast(self, message: ToSlot) -> None:
        """Sends to every slot."""
        for conn in self.slots.values():
            conn.send(message)

    async def close_all(self) -> None:
        """Closes every slot's connection (the slots exit); never waits long for a slot that is gone."""
        for conn in list(self.slots.values()):
            await conn.link.close()
        self.slots = {}

    # -- TaskGateway ------------------------------------------------------------------------------
    def trigger(self, barrier: Barrier) -> None:
        """Sources inject the barrier."""
        self.broadcast(Trigger(barrier=BarrierSpec.of(barrier)))

    def notify_complete(self, checkpoint_id: int) -> None:
        """Every task learns the checkpoint completed (sinks commit)."""
        self.broadcast(Notify(cp=checkpoint_id))

    def notify_aborted(self, checkpoint_id: int) -> None:
        """Every task learns the checkpoint was aborted."""
        self.broadcast(Abort(cp=checkpoint_id))
