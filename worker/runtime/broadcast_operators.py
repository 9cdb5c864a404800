"""Broadcast state and the operator of ``BroadcastProcessFunction`` / ``KeyedBroadcastProcessFunction``.

The operator's second input is broadcast: every subtask sees every broadcast record and applies the
same updates to its broadcast state (a dict per ``MapStateDescriptor``). The data side reads it
(read only); the broadcast side reads and writes it and, when the data stream is keyed, can visit
every key's state (``apply_to_keyed_state``).

Recovery contract (Flink's): broadcast state is checkpointed once — subtask 0 writes its entries as
union operator state, the others write nothing — and every subtask of the restored job, at any
parallelism, starts from those entries. Entries are encoded with the descriptor's serializer (keys
and values alternate in the list), so they are never unpickled unless it says so. Keyed state and
timers of the data side are the keyed backend's, as for ``KeyedProcessFunction``.

Callers: ``two_input.create_two_input_operator``.
"""

from __future__ import annotations

from typing import Any

from streamjob.worker.errors import PipelineError
from streamjob.worker.runtime.co_operators import side_timestamps
from streamjob.worker.runtime.context import ListCollector, ProcessContextImpl, now_ms, with_job_types
from streamjob.worker.runtime.operators import ProcessOperator, StreamOperator
from streamjob.worker.state.descriptors import ListStateDescriptor, MapStateDescriptor

_PREFIX = "__broadcast__"


class ReadOnlyBroadcastStateView:
    """The data side's view of one broadcast state: reads only."""

    __slots__ = ("_entries", "_name")

    def __init__(self, name: str, entries: dict[Any, Any]) -> None:
        self._name = name
        self._entries = entries

    def get(self, key: Any) -> Any:
        """The value of ``key``, or None."""
        return self._entries.get(key)

    def contains(self, key: Any) -> bool:
        """Whether ``key`` has a value."""
        return key in self._entries

    def items(self) -> list[tuple[Any, Any]]:
        """Every entry (a copy)."""
        return list(self._entries.items())

    def keys(self) -> list[Any]:
        """Every key (a copy)."""
        return list(self._entries)

    def values(self) -> list[Any]:
        """Every value (a copy)."""
        return list(self._entries.values())

    def is_empty(self) -> bool:
        """Whether the state has no entry."""
        return not self._entries

    def _read_only(self, *args: Any) -> None:
        raise PipelineError(
            f"broadcast state {self._name!r} is read-only in process_element and on_timer: update it in "
            "process_broadcast_element, so that every subtask applies the same updates"
        )

    put = put_all = remove = clear = _read_only


class BroadcastStateView(ReadOnlyBroadcastStateView):
    """The broadcast side's view of one broadcast state: reads and writes."""

    __slots__ = ()

    def put(self, key: Any, value: Any) -> None:  # type: ignore[override]
        """Sets ``key`` to ``value``."""
        self._entries[key] = value

    def put_all(self, entries: dict[Any, Any]) -> None:  # type: ignore[override]
        """Sets every entry of ``entries``."""
        self._entries.update(entries)

    def remove(self, key: Any) -> None:  # type: ignore[override]
        """Removes ``key`` (no error when absent)."""
        self._entries.pop(key, None)

    def clear(self) -> None:  # type: ignore[override]
        """Removes every entry."""
        self._entries.clear()


class _DataContext(ProcessContextImpl):
    """``ReadOnlyContext``: the current key, timers (keyed), timestamps and the read-only broadcast state."""

    def __init__(self, backend: Any, states: dict[str, ReadOnlyBroadcastStateView]) -> None:
        super().__init__(backend)
        self._states = states

    def get_broadcast_state(self, descriptor: MapStateDescriptor[Any, Any]) -> ReadOnlyBroadcastStateView:
        """The broadcast state ``descriptor`` names (one passed to ``broadcast(...)``)."""
        name = str(getattr(descriptor, "name", descriptor))
        state = self._states.get(name)
        if state is None:
            raise PipelineError(
                f"broadcast state {name!r} was not declared: pass its MapStateDescriptor to "
                f"stream.broadcast(...) (declared: {sorted(self._states)})"
            )
        return state

    def current_watermark(self) -> int:
        """The operator's event time (the minimum over both inputs)."""
        return self.watermark

    def current_processing_time(self) -> int:
        """Epoch milliseconds."""
        return now_ms()


class _BroadcastContext(_DataContext):
    """``Context`` of ``process_broadcast_element``: read-write broadcast state, every key's state."""

    def __init__(self, operator: BroadcastOperator, states: dict[str, ReadOnlyBroadcastStateView]) -> None:
        super().__init__(None, states)  # no current key on the broadcast side: no timers either
        self._operator = operator

    def apply_to_keyed_state(self, descriptor: Any, function: Any) -> None:
        """Calls ``function(key, state)`` for every key of this subtask with a value in ``descriptor``'s state."""
        self._operator.apply_to_keyed_state(descriptor, function)


class BroadcastOperator(ProcessOperator):
    """Runs a (keyed) broadcast process function; see the module docstring."""

    def open(self) -> None:
        t = self.setup.transformation
        types = self.setup.info.job_types
        self._entries: dict[str, dict[Any, Any]] = {}
        self._lists: dict[str, Any] = {}
        readable: dict[str, ReadOnlyBroadcastStateView] = {}
        writable: dict[str, ReadOnlyBroadcastStateView] = {}
        for descriptor in t.options["broadcast_descriptors"]:
            declared = with_job_types(descriptor, types)
            stored: ListStateDescriptor[Any] = ListStateDescriptor(
                _PREFIX + descriptor.name, serializer=declared.serializer
            )
            state = self.op_state.get_union_list_state(stored)
            items = state.get()
            entries = dict(zip(items[::2], items[1::2], strict=True))
            self._entries[descriptor.name] = entries
            self._lists[descriptor.name] = state
            readable[descriptor.name] = ReadOnlyBroadcastStateView(descriptor.name, entries)
            writable[descriptor.name] = BroadcastStateView(descriptor.name, entries)
        StreamOperator.open(self)
        self._ctx = _DataContext(self.backend, readable)
        self._broadcast_ctx = _BroadcastContext(self, writable)
        self._collector = ListCollector()
        self._timestamps = side_timestamps(t.options)

    def process_batch(self, batch: list[Any]) -> list[Any]:
        fn, ctx, broadcast_ctx, collector = self.fn, self._ctx, self._broadcast_ctx, self._collector
        process, process_broadcast = fn.process_element, fn.process_broadcast_element
        first_ts, second_ts = self._timestamps
        set_key = None if self.backend is None else self.backend.set_current_key
        select = self.setup.transformation.key_selector
        for record in batch:
            side, value = record
            if side == 0:
                if set_key is not None:
                    set_key(select(record))
                ctx.fired_at = None if first_ts is None else first_ts(value)
                process(value, ctx, collector)
            else:
                broadcast_ctx.fired_at = None if second_ts is None else second_ts(value)
                process_broadcast(value, broadcast_ctx, collector)
        ctx.fired_at = broadcast_ctx.fired_at = None
        return collector.reset()

    def on_watermark(self, watermark: int) -> tuple[int, list[Any]]:
        self._broadcast_ctx.watermark = watermark
        return super().on_watermark(watermark)

    def apply_to_keyed_state(self, descriptor: Any, function: Any) -> None:
        """``ctx.apply_to_keyed_state`` of the broadcast side (keyed data streams only)."""
        backend = self.backend
        if backend is None:
            raise PipelineError("apply_to_keyed_state needs a keyed data stream: data.key_by(...).connect(...)")
        apply = function.process if hasattr(function, "process") else function
        state = self.runtime_context.get_state(descriptor)
        for key in backend.keys(descriptor):
            backend.set_current_key(key)
            apply(key, state)

    def before_snapshot(self, checkpoint_id: int) -> None:
        """Subtask 0 writes the broadcast state (every subtask holds the same); the others write none."""
        first = self.setup.info.subtask_index == 0
        for name, entries in self._entries.items():
            flat: list[Any] = []
            if first:
                for key, value in entries.items():
                    flat.append(key)
                    flat.append(value)
            self._lists[name].update(flat)


__all__ = ["BroadcastOperator", "BroadcastStateView", "ReadOnlyBroadcastStateView"]
