"""The task's clock (``runtime/clock.py``): the real one reads the same clocks the rest of the runtime does."""

from __future__ import annotations

import time

import pytest

from streamjob.worker.runtime.clock import SYSTEM_CLOCK
from streamjob.worker.runtime.context import now_ms

pytestmark = pytest.mark.unit


def test_the_system_clock_is_the_time_functions_and_the_operators_processing_time() -> None:
    assert SYSTEM_CLOCK.monotonic is time.monotonic  # no wrapper: a read costs a direct call
    assert SYSTEM_CLOCK.thread_time is time.thread_time
    assert SYSTEM_CLOCK.now_ms is now_ms  # timers fire on the clock their registrations read
    before = int(time.time() * 1000)
    assert before <= SYSTEM_CLOCK.now_ms() <= int(time.time() * 1000)
