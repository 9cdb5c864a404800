"""The JobMaster's view of its slot processes: registration, messages out, the task gateway.

Each slot holds one control WebSocket to the JobMaster. Messages to all slots go out in order
through one queue per slot; the registry implements the coordinator's ``TaskGateway``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from streamjob.worker.runtime.codec import pack
from streamjob.worker.runtime.events import Barrier

log = logging.getLogger(__name__)


@dataclass
class SlotConnection:
    """One registered slot process."""

    index: int
    ws: web.WebSocketResponse
    data_address: tuple[str, int]
    pid: int
    outbox: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    sender: asyncio.Task[None] | None = None

    def send(self, message: dict[str, Any]) -> None:
        """Queues a message; delivery order is send order."""
        self.outbox.put_nowait(pack(message))

    async def run_sender(self) -> None:
        """Writes queued messages to the socket."""
        while True:
            data = await self.outbox.get()
            if self.ws.closed:
                return
            try:
                await self.ws.send_bytes(data)
            except ConnectionError:
                return


class SlotRegistry:
    """The slots of the current attempt."""

    def __init__(self) -> None:
        self.slots: dict[int, SlotConnection] = {}
        self.changed = asyncio.Event()
        self.accepting = 0
        self.opened = asyncio.Event()
        self.spares: set[web.WebSocketResponse] = set()

    def open_for(self, count: int) -> None:
        """Accepts up to ``count`` registrations (one attempt's slots)."""
        self.slots = {}
        self.accepting = count
        self.opened.set()

    async def wait_open(self, timeout_s: float) -> None:
        """Holds a slot that connected before the first attempt opened registrations."""
        try:
            await asyncio.wait_for(self.opened.wait(), timeout_s)
        except TimeoutError:
            pass

    async def say_goodbye(self, outcome: str) -> None:
        """Tells every slot, spare ones too, that the job ended (they exit 0 unless it failed)."""
        message = pack({"t": "bye", "outcome": outcome})
        for conn in self.slots.values():
            conn.outbox.put_nowait(message)
        for ws in list(self.spares):
            try:
                await ws.send_bytes(message)
            except (ConnectionError, RuntimeError):
                pass

    def register(self, ws: web.WebSocketResponse, data_address: tuple[str, int], pid: int) -> SlotConnection | None:
        """Assigns the next free slot index, or None when the attempt has all its slots."""
        if len(self.slots) >= self.accepting:
            return None
        index = next(i for i in range(self.accepting) if i not in self.slots)
        conn = SlotConnection(index, ws, data_address, pid)
        conn.sender = asyncio.create_task(conn.run_sender())
        self.slots[index] = conn
        self.changed.set()
        return conn

    async def wait_for_all(self, count: int, timeout_s: float) -> bool:
        """Waits until ``count`` slots registered; False on timeout."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(self.slots) < count:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                return False
        return True

    def broadcast(self, message: dict[str, Any]) -> None:
        """Sends to every slot."""
        for conn in self.slots.values():
            conn.send(message)

    async def close_all(self) -> None:
        """Closes every slot's socket (the slots exit); never waits long for a slot that is gone."""
        for conn in list(self.slots.values()):
            for _ in range(20):  # let queued messages (the goodbye) go out first
                if conn.outbox.empty():
                    break
                await asyncio.sleep(0.05)
            if conn.sender is not None:
                conn.sender.cancel()
            try:
                await asyncio.wait_for(conn.ws.close(), 2.0)
            except (TimeoutError, RuntimeError, ConnectionError):
                log.debug("slot %d did not answer the close handshake", conn.index)
        self.slots = {}

    # -- TaskGateway ------------------------------------------------------------------------------
    def trigger(self, barrier: Barrier) -> None:
        """Sources inject the barrier."""
        self.broadcast({"t": "trigger", "cp": barrier.id, "ts": barrier.timestamp_ms, "sp": barrier.savepoint_dir,
                        "stop": barrier.stop, "unaligned": barrier.unaligned})

    def notify_complete(self, checkpoint_id: int) -> None:
        """Every task learns the checkpoint completed (sinks commit)."""
        self.broadcast({"t": "notify", "cp": checkpoint_id})

    def notify_aborted(self, checkpoint_id: int) -> None:
        """Every task learns the checkpoint was aborted."""
        self.broadcast({"t": "abort", "cp": checkpoint_id})
