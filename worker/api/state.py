"""Keyed and operator state as job authors see it: descriptors, state types, functions."""

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
    "ValueState",
    "ValueStateDescriptor",
]
