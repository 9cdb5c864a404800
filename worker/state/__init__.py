"""State: key groups, keyed state backends (hashmap, rocksdb), timers, operator state, serializers.

The runtime builds one keyed backend per keyed subtask with ``create_keyed_backend`` and one
``OperatorStateStore`` per subtask; user functions see descriptors and state interfaces, which
``streamjob.worker.api`` re-exports. Each module's docstring states its recovery contract.

Modules: ``key_groups`` (stable key -> key group, ranges), ``serializers`` (safe msgpack,
opt-in pickle), ``descriptors`` / ``functions`` / ``primitives`` (public API), ``backend`` (the
keyed backend contract), ``factory`` (builds one), ``keyed_base`` (what both backends share), ``hashmap`` /
``hashmap_states`` and ``rocksdb`` / ``rocksdb_states`` (the two backends), ``chunks`` (the
snapshot file format), ``incremental`` (dirty tracking and shared files), ``timers`` (timer
queues), ``operator_state`` (non-keyed list state).

The names are loaded on first use (PEP 562): the API imports ``state.descriptors``, and a package
``__init__`` that imported the backends would put them (~15 ms) on the start of every process that
imports the API, the JobMaster among them, which never runs a backend.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamjob.worker.state.backend import KeyedBackendContext, KeyedStateBackend
    from streamjob.worker.state.descriptors import (
        AggregatingStateDescriptor,
        ListStateDescriptor,
        MapStateDescriptor,
        ReducingStateDescriptor,
        StateDescriptor,
        ValueStateDescriptor,
    )
    from streamjob.worker.state.factory import create_keyed_backend
    from streamjob.worker.state.functions import AggregateFunction, ReduceFunction
    from streamjob.worker.state.key_groups import (
        KeyGroupAssigner,
        key_group_for,
        key_group_range,
        operator_index_for,
    )
    from streamjob.worker.state.operator_state import OperatorStateStore
    from streamjob.worker.state.primitives import (
        AggregatingState,
        ListState,
        MapState,
        ReducingState,
        State,
        ValueState,
    )
    from streamjob.worker.state.serializers import PickleSerializer, SafeSerializer, Serializer

_MODULES = {
    "AggregateFunction": "functions",
    "AggregatingState": "primitives",
    "AggregatingStateDescriptor": "descriptors",
    "KeyGroupAssigner": "key_groups",
    "KeyedBackendContext": "backend",
    "KeyedStateBackend": "backend",
    "ListState": "primitives",
    "ListStateDescriptor": "descriptors",
    "MapState": "primitives",
    "MapStateDescriptor": "descriptors",
    "OperatorStateStore": "operator_state",
    "PickleSerializer": "serializers",
    "ReduceFunction": "functions",
    "ReducingState": "primitives",
    "ReducingStateDescriptor": "descriptors",
    "SafeSerializer": "serializers",
    "Serializer": "serializers",
    "State": "primitives",
    "StateDescriptor": "descriptors",
    "ValueState": "primitives",
    "ValueStateDescriptor": "descriptors",
    "create_keyed_backend": "factory",
    "key_group_for": "key_groups",
    "key_group_range": "key_groups",
    "operator_index_for": "key_groups",
}
"""Where each public name lives: ``__getattr__`` imports its module on first use."""

__all__ = [
    "AggregateFunction",
    "AggregatingState",
    "AggregatingStateDescriptor",
    "KeyGroupAssigner",
    "KeyedBackendContext",
    "KeyedStateBackend",
    "ListState",
    "ListStateDescriptor",
    "MapState",
    "MapStateDescriptor",
    "OperatorStateStore",
    "PickleSerializer",
    "ReduceFunction",
    "ReducingState",
    "ReducingStateDescriptor",
    "SafeSerializer",
    "Serializer",
    "State",
    "StateDescriptor",
    "ValueState",
    "ValueStateDescriptor",
    "create_keyed_backend",
    "key_group_for",
    "key_group_range",
    "operator_index_for",
]


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
