"""Keyed and operator state as job authors see it: descriptors, state types, functions, serializers, TTL."""

from streamjob.worker.state.descriptors import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateDescriptor,
    ValueStateDescriptor,
)
from streamjob.worker.state.functions import AggregateFunction, ReduceFunction
from streamjob.worker.state.primitives import AggregatingState, ListState, MapState, ReducingState, State, ValueState
from streamjob.worker.state.serializers import PickleSerializer, SafeSerializer, Serializer
from streamjob.worker.state.ttl import StateTtlConfig, StateVisibility, TtlTimeCharacteristic, UpdateType

__all__ = [
    "AggregateFunction",
    "AggregatingState",
    "AggregatingStateDescriptor",
    "ListState",
    "ListStateDescriptor",
    "MapState",
    "MapStateDescriptor",
    "PickleSerializer",
    "ReduceFunction",
    "ReducingState",
    "ReducingStateDescriptor",
    "SafeSerializer",
    "Serializer",
    "State",
    "StateDescriptor",
    "StateTtlConfig",
    "StateVisibility",
    "TtlTimeCharacteristic",
    "UpdateType",
    "ValueState",
    "ValueStateDescriptor",
]
