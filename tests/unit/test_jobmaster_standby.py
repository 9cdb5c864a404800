"""Spare slots in the JobMaster's registry (standby workers): idle until a failover gives them a lost slot's index.

``SlotRegistry`` keeps a slot that registers while the attempt has all its slots as a spare. A spare
hears nothing of the running attempt (no deploy, trigger, notification or release) but the job's
goodbye; when a slot is lost, the next attempt's ``open_for`` gives its index to the spare that
registered first, unfenced (it ran no task of the failed attempt), while the survivors stay fenced
until they answer ``released``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streamjob.worker.jobmaster.slots import SlotRegistry
from streamjob.worker.protocol.events import Barrier
from streamjob.worker.protocol.messages import Bye, Start

pytestmark = pytest.mark.unit


class _Link:
    """A control link that records what it was sent."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.closed = False

    def send(self, message: Any) -> None:
        self.sent.append(message)

    async def close(self, wait_s: float = 1.0) -> None:
        self.closed = True


def _link() -> Any:
    return _Link()


def test_spares_hear_nothing_of_the_running_attempt_but_the_goodbye() -> None:
    async def main() -> None:
        registry = SlotRegistry()
        registry.open_for(2)
        for pid in (11, 12):
            assert registry.register(_link(), ("h", pid), pid) is not None
        spare_link = _link()
        assert registry.register(spare_link, ("h", 13), 13) is None
        registry.add_spare(spare_link, ("h", 13), 13)
        registry.broadcast(Start())
        registry.trigger(Barrier(id=1, timestamp_ms=0))
        registry.notify_complete(1)
        registry.notify_aborted(2)
        registry.release(1)
        assert spare_link.sent == []
        assert all(len(conn.link.sent) == 5 for conn in registry.slots.values())  # type: ignore[attr-defined]
        await registry.say_goodbye("finished")
        assert spare_link.sent == [Bye(outcome="finished")]

    asyncio.run(main())


def test_a_lost_slot_index_goes_to_the_first_spare_unfenced_and_the_second_stays_spare() -> None:
    async def main() -> None:
        registry = SlotRegistry()
        registry.open_for(2)
        first = registry.register(_link(), ("h", 1), 11)
        second = registry.register(_link(), ("h", 2), 12)
        assert first is not None and second is not None
        early, late = _link(), _link()
        spare_early = registry.add_spare(early, ("h", 3), 13)
        spare_late = registry.add_spare(late, ("h", 4), 14)
        registry.release(1)  # attempt 1 failed: slot 0's process died
        registry.remove(first)
        registry.open_for(2)  # attempt 2
        assert spare_early.promoted is not None and spare_early.promoted.index == 0
        assert spare_early.promoted.fenced is None and spare_late.promoted is None
        assert list(registry.spares) == [late]
        assert registry.ready == 1, "the survivor is fenced until it answers released"
        registry.released(second, 1)
        assert await registry.wait_for_all(2, 1.0)
        assert early.sent == [] and late.sent == []

    asyncio.run(main())


def test_a_lost_spare_frees_nothing_and_a_full_attempt_keeps_its_slots() -> None:
    registry = SlotRegistry()
    registry.open_for(1)
    slot = registry.register(_link(), ("h", 1), 11)
    assert slot is not None
    link = _link()
    registry.add_spare(link, ("h", 2), 12)
    registry.spares.pop(link)  # its connection closed (control.py)
    registry.open_for(1)
    assert registry.slots == {0: slot} and not registry.spares


def test_a_replacement_registering_during_the_restart_delay_leaves_the_lost_index_to_the_spare() -> None:
    registry = SlotRegistry()
    registry.open_for(2)
    lost, survivor = registry.register(_link(), ("h", 1), 11), registry.register(_link(), ("h", 2), 12)
    assert lost is not None and survivor is not None
    spare = registry.add_spare(_link(), ("h", 3), 13)
    registry.release(1)
    registry.remove(lost)  # attempt 1 failed; the restart delay runs, the next open_for has not come
    assert registry.register(_link(), ("h", 4), 14) is None, "the replacement must wait as the next spare"
    assert spare.promoted is not None and spare.promoted.index == 0 and spare.promoted.fenced is None
    assert registry.slots[1] is survivor and not registry.spares
