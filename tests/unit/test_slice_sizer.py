"""The consumer's slices: about a budget of work each, and cache-sized (about SLICE_CACHE_S, at least 1,024)."""

from __future__ import annotations

import pytest

from streamjob.worker.runtime.task_setup import SLICE_CACHE_RECORDS, SLICE_CACHE_S, SliceSizer

pytestmark = pytest.mark.unit


def test_records_of_half_a_microsecond_run_in_slices_of_the_least_cap() -> None:
    sizer = SliceSizer(0.01)
    assert sizer.size == 64  # the first slice measures the chain
    sizer.record(64, 64 * 1e-6)  # 1 us a record: the budget alone would allow 10,000
    assert sizer.size == SLICE_CACHE_RECORDS
    unmeasured = SliceSizer(0.01)
    unmeasured.record(64, 0.0)  # too fast for the clock: cache-sized, not "everything"
    assert unmeasured.size == SLICE_CACHE_RECORDS


def test_cheap_records_run_in_slices_of_the_cache_time() -> None:
    sizer = SliceSizer(0.01)
    sizer.record(64, 64 * 100e-9)  # 100 ns a record: SLICE_CACHE_S of them, fewer than the budget's 100,000
    assert abs(sizer.size - SLICE_CACHE_S / 100e-9) <= 1 and sizer.size > SLICE_CACHE_RECORDS


def test_expensive_records_run_in_slices_of_the_budget() -> None:
    sizer = SliceSizer(0.01)
    for _ in range(20):
        sizer.record(10, 10 * 1e-3)  # 1 ms a record: 10 per 10 ms
    assert sizer.size == 10
    sizer.record(0, 1.0)  # an empty slice changes nothing
    assert sizer.size == 10
