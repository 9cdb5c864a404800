"""State descriptors: the public declaration of a piece of keyed or operator state.

A descriptor names a state (unique within its operator), says its kind (value, list, map,
reducing, aggregating) and how its values are serialized. Functions call
``ctx.get_state(descriptor)`` in ``open()``; the backend returns the same state for the same
name, and restores what a snapshot held for that name. The serializer defaults to
``SafeSerializer`` declaring the dataclasses and enums named by the type hints; a
``PickleSerializer`` must be passed explicitly. ``enable_time_to_live(StateTtlConfig)`` gives a
keyed state a time-to-live (``ttl.py``).

Recovery contract: a restored state is decoded with the serializer of the descriptor that
registers it; state written by a different serializer kind is refused with a RestoreError.

Callers: job authors (through ``streamjob.worker.api``), the keyed state backends and the
operator state store.
"""

from __future__ import annotations

import copy
import datetime as dt
import decimal
from collections.abc import Callable
from typing import Any, ClassVar, Final, Generic, TypeVar

from streamjob.worker.errors import PipelineError
from streamjob.worker.state.functions import AggregateFunction, ReduceFunction
from streamjob.worker.state.serializers import SafeSerializer, Serializer, collect_declared_types
from streamjob.worker.state.ttl import StateTtlConfig

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
IN = TypeVar("IN")
ACC = TypeVar("ACC")
OUT = TypeVar("OUT")

_IMMUTABLE: Final = (
    int,
    float,
    complex,
    str,
    bytes,
    bool,
    type(None),
    frozenset,
    dt.date,
    dt.time,
    dt.timedelta,
    decimal.Decimal,
)


def _is_immutable(value: object) -> bool:
    if isinstance(value, tuple):
        return all(_is_immutable(item) for item in value)
    return isinstance(value, _IMMUTABLE)


class StateDescriptor:
    """Base of all descriptors: a name, a kind and a serializer."""

    kind: ClassVar[str] = ""
    __slots__ = ("name", "serializer", "ttl_config")

    def __init__(self, name: str, serializer: Serializer | None, *hints: object) -> None:
        if not isinstance(name, str) or not name:
            raise PipelineError(f"a state descriptor needs a non-empty str name, got {name!r}")
        if serializer is not None and not isinstance(serializer, Serializer):
            raise PipelineError(
                f"state {name!r}: serializer must be a streamjob Serializer, got {type(serializer).__name__}"
            )
        self.name = name
        self.serializer: Serializer = serializer or SafeSerializer(collect_declared_types(*hints))
        self.ttl_config: StateTtlConfig | None = None

    def enable_time_to_live(self, ttl_config: StateTtlConfig) -> None:
        """Gives every value of this keyed state a time-to-live (``ttl.py``; not for operator state)."""
        if not isinstance(ttl_config, StateTtlConfig):
            raise PipelineError(
                f"state {self.name!r}: enable_time_to_live takes a StateTtlConfig "
                f"(StateTtlConfig.new_builder(Time.seconds(n)).build()), got {type(ttl_config).__name__}"
            )
        self.ttl_config = ttl_config if ttl_config.is_enabled() else None

    def get_ttl_config(self) -> StateTtlConfig | None:
        """The TTL config, or None."""
        return self.ttl_config

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, serializer={self.serializer.serializer_id})"


class ValueStateDescriptor(StateDescriptor, Generic[T]):
    """A single value per key; ``default`` is returned (copied if mutable) while none is set.

    ``ttl`` (seconds or a timedelta) is short for ``enable_time_to_live`` with a config of that
    TTL, ``OnCreateAndWrite``, ``NeverReturnExpired`` and full-snapshot cleanup.
    """

    kind: ClassVar[str] = "value"
    __slots__ = ("_default_immutable", "default", "type_hint")

    def __init__(
        self,
        name: str,
        type_hint: Any = None,
        default: T | None = None,
        *,
        serializer: Serializer | None = None,
        ttl: float | dt.timedelta | None = None,
    ) -> None:
        super().__init__(name, serializer, type_hint, type(default) if default is not None else None)
        self.type_hint = type_hint
        self.default = default
        if ttl is not None:
            if isinstance(ttl, int | float) and not isinstance(ttl, bool):
                ttl = dt.timedelta(seconds=ttl)
            self.enable_time_to_live(StateTtlConfig.new_builder(ttl).cleanup_full_snapshot().build())
        self._default_immutable = _is_immutable(default)

    def default_value(self) -> T | None:
        """The default for a key without a value: a fresh copy when the default is mutable."""
        if self._default_immutable:
            return self.default
        return copy.deepcopy(self.default)


class ListStateDescriptor(StateDescriptor, Generic[T]):
    """A list of elements per key (keyed), or per subtask (operator list / union list state)."""

    kind: ClassVar[str] = "list"
    __slots__ = ("type_hint",)

    def __init__(self, name: str, type_hint: Any = None, *, serializer: Serializer | None = None) -> None:
        super().__init__(name, serializer, type_hint)
        self.type_hint = type_hint


class MapStateDescriptor(StateDescriptor, Generic[K, V]):
    """A map per key; user keys must be hashable (and encodable by the serializer)."""

    kind: ClassVar[str] = "map"
    __slots__ = ("key_type", "value_type")

    def __init__(
        self, name: str, key_type: Any = None, value_type: Any = None, *, serializer: Serializer | None = None
    ) -> None:
        super().__init__(name, serializer, key_type, value_type)
        self.key_type = key_type
        self.value_type = value_type


class ReducingStateDescriptor(StateDescriptor, Generic[T]):
    """A value per key folded with a ReduceFunction (or a plain ``(a, b) -> c`` callable)."""

    kind: ClassVar[str] = "reducing"
    __slots__ = ("reduce", "reduce_function", "type_hint")

    def __init__(
        self,
        name: str,
        reduce_function: ReduceFunction[T] | Callable[[T, T], T],
        type_hint: Any = None,
        *,
        serializer: Serializer | None = None,
    ) -> None:
        super().__init__(name, serializer, type_hint)
        if isinstance(reduce_function, ReduceFunction):
            self.reduce: Callable[[T, T], T] = reduce_function.reduce
        elif callable(reduce_function):
            self.reduce = reduce_function
        else:
            raise PipelineError(f"state {name!r}: reduce_function must be a ReduceFunction or a callable")
        self.reduce_function = reduce_function
        self.type_hint = type_hint


class AggregatingStateDescriptor(StateDescriptor, Generic[IN, ACC, OUT]):
    """An accumulator per key driven by an AggregateFunction; ``type_hint`` is the accumulator's."""

    kind: ClassVar[str] = "aggregating"
    __slots__ = ("aggregate_function", "type_hint")

    def __init__(
        self,
        name: str,
        aggregate_function: AggregateFunction[IN, ACC, OUT],
        type_hint: Any = None,
        *,
        serializer: Serializer | None = None,
    ) -> None:
        super().__init__(name, serializer, type_hint)
        for method in ("create_accumulator", "add", "get_result", "merge"):
            if not callable(getattr(aggregate_function, method, None)):
                raise PipelineError(
                    f"state {name!r}: aggregate_function must implement AggregateFunction (missing {method}())"
                )
        self.aggregate_function = aggregate_function
        self.type_hint = type_hint


__all__ = [
    "AggregatingStateDescriptor",
    "ListStateDescriptor",
    "MapStateDescriptor",
    "ReducingStateDescriptor",
    "StateDescriptor",
    "ValueStateDescriptor",
]
