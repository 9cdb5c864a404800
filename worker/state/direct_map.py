"""INTERNAL: a hashmap map state's table handed to an operator that does its own key handling.

The window operator (``runtime/direct_windows.py``) adds each record to its key's windows with
dict operations on ``data`` (``{key: {user_key: value}}``) instead of calling a map state's
methods with the current key set: no Python frame per state access, no copy-on-write check per
record. Instead, a snapshot copies such a table whole in its synchronous part (``copy_map_table``:
the maps, and values that are not immutable scalars), so the caller may change maps and values
in place at any time. A copy per snapshot costs about what copy-on-write costs when most keys
change between snapshots (a window state: every key's current window), without the check per
access. The caller keeps the other rules of the state objects:

- an emptied map is removed from ``data`` (a key without entries has no map);
- ``mark`` (not None with incremental snapshots) is called with every key written.

Callers: ``HashMapKeyedStateBackend.direct_map`` and its ``_freeze``; the window operator's fast path.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from streamjob.worker.state.hashmap_states import IMMUTABLE_TYPES


def copy_value(value: Any) -> Any:
    """A copy of ``value`` that an in-place change of the original cannot reach."""
    kind = type(value)
    if kind in IMMUTABLE_TYPES:
        return value
    if kind is list:
        for item in value:
            if type(item) not in IMMUTABLE_TYPES:
                return copy.deepcopy(value)
        return value.copy()  # a list of scalars (a typical accumulator)
    return copy.deepcopy(value)


def copy_map_table(data: dict[Any, dict[Any, Any]]) -> dict[Any, dict[Any, Any]]:
    """A copy of a map state's table sharing nothing that can change in place."""
    immutable = IMMUTABLE_TYPES
    return {
        key: {k: v if type(v) in immutable else copy_value(v) for k, v in entries.items()}
        for key, entries in data.items()
    }


class DirectMap:
    """One map state's table (see the module docstring)."""

    __slots__ = ("data", "mark")

    def __init__(self, data: dict[Any, dict[Any, Any]], mark: Callable[[Any], None] | None) -> None:
        self.data = data
        self.mark = mark


__all__ = ["DirectMap", "copy_map_table", "copy_value"]
