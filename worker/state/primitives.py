"""The keyed state interfaces a user function sees: value, list, map, reducing, aggregating.

Every method acts on the value of the backend's *current key* (set by the runtime before each
record or timer). Recovery contract: after a restore from checkpoint *n*, each state holds
exactly what it held when the barrier of *n* passed its operator; changes made after that are
gone (and are redone by the replay of the sources from their positions in *n*).

Values returned by ``value()`` / ``get()`` may be the stored objects themselves (hashmap
backend) or fresh copies (rocksdb backend): mutate them only to write them back with
``update()`` / ``put()``, which is the only way a change is guaranteed to be kept.

Callers: user functions (through ``RuntimeContext.get_state``); implemented by the hashmap and
rocksdb backends.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
IN = TypeVar("IN")
OUT = TypeVar("OUT")


class State(ABC):
    """Base of keyed state: ``clear()`` removes the current key's value."""

    __slots__ = ()

    @abstractmethod
    def clear(self) -> None:
        """Removes the value of the current key."""


class ValueState(State, Generic[T]):
    """One value per key."""

    __slots__ = ()

    @abstractmethod
    def value(self) -> T | None:
        """The current key's value, or the descriptor's default (a fresh copy if mutable)."""

    @abstractmethod
    def update(self, value: T | None) -> None:
        """Sets the current key's value (``None`` clears it, as in Flink)."""


class ListState(State, Generic[T]):
    """A list per key."""

    __slots__ = ()

    @abstractmethod
    def get(self) -> list[T]:
        """The current key's elements (empty list when none)."""

    @abstractmethod
    def add(self, value: T) -> None:
        """Appends one element."""

    @abstractmethod
    def add_all(self, values: Iterable[T]) -> None:
        """Appends elements in order."""

    @abstractmethod
    def update(self, values: Iterable[T]) -> None:
        """Replaces the elements (an empty iterable clears)."""


class MapState(State, Generic[K, V]):
    """A map per key.

    User keys equal in Python (``1``, ``1.0``, ``True``) are one key, as in a dict; snapshots store
    them in canonical form, so after a restore (or on the rocksdb backend) they read back as ``1``.
    """

    __slots__ = ()

    @abstractmethod
    def get(self, key: K) -> V | None:
        """The value of ``key``, or None."""

    @abstractmethod
    def put(self, key: K, value: V) -> None:
        """Sets ``key`` to ``value``."""

    @abstractmethod
    def put_all(self, entries: dict[K, V] | Iterable[tuple[K, V]]) -> None:
        """Sets several entries."""

    @abstractmethod
    def contains(self, key: K) -> bool:
        """Whether ``key`` is present."""

    @abstractmethod
    def remove(self, key: K) -> None:
        """Removes ``key`` if present."""

    @abstractmethod
    def keys(self) -> list[K]:
        """The user keys (a snapshot list: safe to mutate the map while iterating it)."""

    @abstractmethod
    def values(self) -> list[V]:
        """The values."""

    @abstractmethod
    def items(self) -> list[tuple[K, V]]:
        """The entries."""

    @abstractmethod
    def is_empty(self) -> bool:
        """Whether the current key's map has no entries."""


class ReducingState(State, Generic[T]):
    """A value per key folded with the descriptor's reduce function."""

    __slots__ = ()

    @abstractmethod
    def get(self) -> T | None:
        """The reduced value, or None when nothing was added."""

    @abstractmethod
    def add(self, value: T) -> None:
        """Folds ``value`` into the current value."""


class AggregatingState(State, Generic[IN, OUT]):
    """An accumulator per key driven by the descriptor's AggregateFunction."""

    __slots__ = ()

    @abstractmethod
    def get(self) -> OUT | None:
        """``get_result(accumulator)``, or None when nothing was added."""

    @abstractmethod
    def add(self, value: IN) -> None:
        """``accumulator = add(value, accumulator)`` (creating the accumulator if needed)."""


__all__ = ["AggregatingState", "ListState", "MapState", "ReducingState", "State", "ValueState"]
