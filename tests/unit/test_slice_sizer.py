"""The consumer's slices: about a budget of work each, never more than a cache-sized number of records."""

from __future__ import annotations

import pytest

from streamjob.worker.runtime.task_setup import SLICE_RECORDS_MAX, SliceSizer

pytestmark = pytest.mark.unit


def test_cheap_records_run_in_slices_of_at_most_the_cap() -> None:
    sizer = SliceSizer(0.01)
    assert sizer.size == 64  # the first slice measures the chain
    sizer.record(64, 64 * 100e-9)  # 100 ns a record: the budget alone would allow 100,000
    assert sizer.size == SLICE_RECORDS_MAX
    unmeasured = SliceSizer(0.01)
    unmeasured.record(64, 0.0)  # too fast for the clock: still the cap, not "everything"
    assert unmeasured.size == SLICE_RECORDS_MAX


def test_expensive_records_run_in_slices_of_the_budget() -> None:
    sizer = SliceSizer(0.01, most=4096)
    for _ in range(20):
        sizer.record(10, 10 * 1e-3)  # 1 ms a record: 10 per 10 ms
    assert sizer.size == 10
    sizer.record(0, 1.0)  # an empty slice changes nothing
    assert sizer.size == 10
