"""Timestamps through one-input operators: the ``(timestamp, value)`` form of an event-time stream.

After ``assign_timestamps_and_watermarks``, records that ``map``, ``flat_map`` or ``process`` change
keep the timestamp of the record they came from, as in Flink: those operators emit ``(ts, value)``
pairs (``runtime/stamped_operators.py``) and the stream is *stamped*. ``key_by``, ``filter``, further
``map``/``flat_map``/``process`` and ``window`` work on the pairs (keys and functions see the value);
every other consumer gets the plain values through an ``unstamp`` operator inserted in front of it
(``DataStream._edge``), so sinks, reduces, unions and operators added later never see a pair.
Streams without event time are never stamped and pay nothing. Callers: ``api/datastream.py``.
"""

from __future__ import annotations

import operator
from typing import Any

from streamjob.worker.api.watermarks import WatermarkStrategy

CARRIED = WatermarkStrategy.no_watermarks().with_timestamp_assigner(
    operator.itemgetter(0)  # type: ignore[attr-defined]  # mypy sees operator/ (ours)
)
"""The strategy of a stamped stream: a record's timestamp is the pair's first field."""


class OnValue:
    """A key selector of a stamped stream: the user's selector applied to the pair's value."""

    __slots__ = ("selector",)

    def __init__(self, selector: Any) -> None:
        self.selector = selector

    def __call__(self, pair: Any) -> Any:
        return self.selector(pair[1])


def stamp_options(stamped: bool, strategy: WatermarkStrategy | None, operation: str) -> dict[str, Any]:
    """The transformation options of a stamping ``operation`` on a stream (stamped, or with ``strategy``)."""
    return {"stamp": operation, "stamped_in": stamped, "timestamps": CARRIED if stamped else strategy}


def plain_source_id(stream: Any) -> int:
    """The transformation whose output is ``stream``'s plain values (its unstamp operator when stamped)."""
    return int(stream._unstamp.id) if getattr(stream, "_stamped", False) else int(stream.transformation.id)


def event_time_of(stream: Any) -> WatermarkStrategy | None:
    """The strategy giving ``stream``'s plain values their timestamps: None for a stamped stream's values."""
    return None if getattr(stream, "_stamped", False) else stream._timestamps


__all__ = ["CARRIED", "OnValue", "event_time_of", "plain_source_id", "stamp_options"]
