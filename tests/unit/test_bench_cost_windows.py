"""The arithmetic of bench/cost_windows.py: sink timelines to per-window figures to costs."""

from __future__ import annotations

import pytest

from bench.cost_windows import at, costs, interval95, window_figures

pytestmark = pytest.mark.unit


def steady(rate: float, cpu_per_event_ns: float, start: float = 0.0, end: float = 10.0) -> list[list[float]]:
    """A sink's samples every 50 ms at a constant rate and CPU cost per event."""
    samples, t = [], start
    while t <= end + 1e-9:
        n = rate * (t - start)
        samples.append([t, n, n * cpu_per_event_ns / 1e9])
        t += 0.05
    return samples


def test_at_interpolates_between_samples_and_refuses_outside_them() -> None:
    timeline = [[1.0, 100, 0.5], [2.0, 300, 1.5]]
    assert at(timeline, 1.25) == pytest.approx((150.0, 0.75))
    assert at(timeline, 2.0) == pytest.approx((300.0, 1.5))
    assert at(timeline, 0.99) is None and at(timeline, 2.01) is None
    assert at([], 1.0) is None


def test_window_figures_add_up_the_sinks() -> None:
    sinks = [steady(1_000_000, 400), steady(500_000, 800)]
    figures = window_figures(sinks, 2.0, 6.0)
    assert figures is not None
    assert figures["events_per_s"] == pytest.approx(1_500_000, rel=1e-6)
    assert figures["cpu_ns_per_event"] == pytest.approx((1_000_000 * 400 + 500_000 * 800) / 1_500_000, rel=1e-6)
    assert window_figures(sinks, 8.0, 12.0) is None, "a window past a sink's last sample has no figures"


def _window(kind: str, rate: float, cpu: float) -> dict[str, object]:
    return {"kind": kind, "figures": {"events_per_s": rate, "cpu_ns_per_event": cpu}}


def test_each_on_window_is_compared_with_the_mean_of_its_neighbours() -> None:
    # a machine slowing down linearly: OFF 100, 90, 80; ON windows 5 % below the line (95 → 90.25, 85 → 80.75)
    windows = [
        _window("off", 100, 100),
        _window("on", 90.25, 105),
        _window("off", 90, 100),
        _window("on", 80.75, 105),
        _window("off", 80, 100),
    ]
    result = costs(windows)
    assert result["wall"]["windows"] == [5.0, 5.0]
    assert result["wall"]["median"] == 5.0
    assert result["cpu"]["windows"] == pytest.approx([4.76, 4.76], abs=0.01)


def test_an_on_window_without_figures_or_without_both_neighbours_is_left_out() -> None:
    windows = [
        _window("on", 90, 100),
        _window("off", 100, 100),
        {"kind": "on", "figures": None},
        _window("off", 100, 100),
        _window("on", 99, 101),
        _window("off", 100, 100),
    ]
    result = costs(windows)
    assert result["wall"]["windows"] == [1.0]
    assert result["wall"]["ci95"] is None


def test_interval95_is_students_t_around_the_mean() -> None:
    low, high = interval95([1.0, 2.0, 3.0]) or (0.0, 0.0)
    assert (low + high) / 2 == pytest.approx(2.0)
    assert high - low == pytest.approx(2 * 4.30 * 1.0 / 3**0.5, abs=0.02)  # rounded to 0.01
    assert interval95([1.0]) is None
