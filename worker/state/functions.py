"""User function contracts used by reducing and aggregating state (re-exported by the public API).

``ReduceFunction`` combines two values of the same type; ``AggregateFunction`` folds inputs into
an accumulator and reads a result from it (Flink's ``AggregateFunction``). Both must be
deterministic and side-effect free: after a restore, the state holds what they returned before
the checkpoint, and nothing is replayed through them twice for records covered by it.

Callers: ``ReducingStateDescriptor`` / ``AggregatingStateDescriptor`` and the state backends.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Generic, TypeVar

T = TypeVar("T")
IN = TypeVar("IN")
ACC = TypeVar("ACC")
OUT = TypeVar("OUT")


class ReduceFunction(ABC, Generic[T]):
    """Combines two values into one: ``reduce(a, b)`` must be associative."""

    @abstractmethod
    def reduce(self, value1: T, value2: T) -> T:
        """The combination of two values (the older is ``value1``)."""


class AggregateFunction(ABC, Generic[IN, ACC, OUT]):
    """Incremental aggregation: accumulator in state, result computed on read."""

    @abstractmethod
    def create_accumulator(self) -> ACC:
        """A new, empty accumulator (called once per key on the first ``add``)."""

    @abstractmethod
    def add(self, value: IN, accumulator: ACC) -> ACC:
        """Adds ``value`` and returns the accumulator (may be the same object, mutated)."""

    @abstractmethod
    def get_result(self, accumulator: ACC) -> OUT:
        """The result for the current accumulator."""

    @abstractmethod
    def merge(self, a: ACC, b: ACC) -> ACC:
        """Merges two accumulators (session windows, rescaling of pre-aggregations)."""


__all__ = ["AggregateFunction", "ReduceFunction"]
