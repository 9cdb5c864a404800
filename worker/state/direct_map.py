"""INTERNAL: a hashmap map state's table handed to an operator that does its own key handling.

The window operator (``runtime/direct_windows.py``) adds each record to its key's windows with
dict operations on ``data`` (``{key: {user_key: value}}``) instead of calling a map state's
methods with the current key set: no Python frame per state access. The rules the state objects
keep are the caller's then:

- while a snapshot shares the table's objects (``sharing()``, read once per batch: snapshots are
  taken between batches), a key's map is used through ``private(key)`` / ``private_or_new(key)``,
  which replace the live map (and its mutable values) by a copy on the key's first access;
- an emptied map is removed from ``data`` (a key without entries has no map);
- ``mark`` (not None with incremental snapshots) is called with every key written.

Copying a value: immutable scalars are kept, a list of immutable scalars (a typical accumulator)
is copied with ``list.copy``, anything else with ``copy.deepcopy``.
Callers: ``HashMapKeyedStateBackend.direct_map``; the window operator's fast path.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Protocol

from streamjob.worker.state.hashmap_states import IMMUTABLE_TYPES, HashTable


class _Sharing(Protocol):
    _inflight: int


def copy_value(value: Any) -> Any:
    """A copy of ``value`` that an in-place change of the original cannot reach."""
    kind = type(value)
    if kind in IMMUTABLE_TYPES:
        return value
    if kind is list:
        for item in value:
            if type(item) not in IMMUTABLE_TYPES:
                return copy.deepcopy(value)
        return value.copy()
    return copy.deepcopy(value)


class DirectMap:
    """One map state's table and its copy-on-write bookkeeping (see the module docstring)."""

    __slots__ = ("_backend", "_copied", "data", "mark")

    def __init__(self, backend: _Sharing, table: HashTable, mark: Callable[[Any], None] | None) -> None:
        self._backend = backend
        self.data: dict[Any, dict[Any, Any]] = table.data
        self._copied = table.copied
        self.mark = mark

    def sharing(self) -> bool:
        """Whether a snapshot may share the stored maps and values now (copy before changing them)."""
        return self._backend._inflight > 0

    def private(self, key: Any) -> dict[Any, Any] | None:
        """The key's map, copied first if a snapshot may share it; None when the key has none."""
        stored = self.data.get(key)
        if stored is None or key in self._copied:
            return stored
        stored = {k: copy_value(v) for k, v in stored.items()}
        self.data[key] = stored
        self._copied.add(key)
        return stored

    def private_or_new(self, key: Any) -> dict[Any, Any]:
        """The key's private map, a new empty one (stored) when it has none."""
        stored = self.private(key)
        if stored is None:
            stored = self.data[key] = {}
            self._copied.add(key)
        return stored


__all__ = ["DirectMap", "copy_value"]
