"""Operator (non-keyed) state: lists of elements per subtask, redistributed on rescale.

What ``CheckpointedFunction`` and sources keep outside keyed state (split positions, pending
transactions). Two redistribution modes, as in Flink:

- ``get_list_state`` (even split): at an unchanged parallelism every subtask gets back exactly
  its own elements (as Flink does: sinks' transactions and readers' splits stay put); after a
  rescale the old subtasks' elements are concatenated in old-subtask order and new subtask *i*
  of *p* takes the contiguous slice ``[i * n // p, (i + 1) * n // p)``. Either way every element
  lands in exactly one new subtask.
- ``get_union_list_state``: every new subtask gets all elements of all old subtasks (and
  decides itself which to keep).

Recovery contract: after a restore from checkpoint *n*, the states hold what they held when
*n*'s barrier passed this operator, redistributed as above. Elements are decoded only when a
descriptor registers the state, with its serializer (never unpickled unless it declares
``PickleSerializer``). Restored states that are not registered again are carried over into
the next snapshots unchanged.

Callers: the runtime's operators (one store per operator subtask: ``restore`` before
``initialize_state``, ``snapshot`` at each barrier).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from streamjob.worker.errors import CorruptStateError, PipelineError, RestoreError, SerializationError
from streamjob.worker.snapshot.handles import SnapshotReader, SnapshotWriter, StateHandle
from streamjob.worker.state.chunks import safe_uid
from streamjob.worker.state.descriptors import ListStateDescriptor
from streamjob.worker.state.primitives import ListState
from streamjob.worker.state.serializers import KEY_SERIALIZER, with_declared
from streamjob.worker.state.snapshot_runner import SnapshotRunner

FORMAT: Final = "streamjob-operator"
VERSION: Final = 1
SPLIT: Final = "split"
UNION: Final = "union"


class OperatorListState(ListState[Any]):
    """A plain list of elements of one subtask (not scoped to any key)."""

    __slots__ = ("_items",)

    def __init__(self, items: list[Any]) -> None:
        self._items = items

    def get(self) -> list[Any]:
        """A copy of the elements."""
        return self._items.copy()

    def add(self, value: Any) -> None:
        """Appends one element."""
        self._items.append(value)

    def add_all(self, values: Iterable[Any]) -> None:
        """Appends elements."""
        self._items.extend(values)

    def update(self, values: Iterable[Any]) -> None:
        """Replaces the elements."""
        self._items[:] = list(values)

    def clear(self) -> None:
        """Removes every element."""
        self._items.clear()


@dataclass(slots=True)
class _Registered:
    descriptor: ListStateDescriptor[Any]
    mode: str
    state: OperatorListState


@dataclass(slots=True)
class _Raw:
    mode: str
    serializer_id: str
    elements: list[bytes]


def even_slice(total: int, index: int, parallelism: int) -> tuple[int, int]:
    """The ``[start, end)`` slice of ``total`` elements that new subtask ``index`` takes."""
    return index * total // parallelism, (index + 1) * total // parallelism


class OperatorStateStore:
    """The operator state of one operator subtask; see the module docstring."""

    def __init__(
        self, operator_uid: str = "operator", subtask_index: int = 0, declared_types: tuple[type, ...] = ()
    ) -> None:
        self._uid = operator_uid
        self._subtask = subtask_index
        self._declared = declared_types  # the job's allowed classes, declared on safe serializers
        self._states: dict[str, _Registered] = {}
        self._raw: dict[str, _Raw] = {}
        self._restored = False

    def is_restored(self) -> bool:
        """Whether ``restore`` was called with state of at least one old subtask."""
        return self._restored

    def get_list_state(self, descriptor: ListStateDescriptor[Any]) -> ListState[Any]:
        """Even-split redistributed list state."""
        return self._get(descriptor, SPLIT)

    def get_union_list_state(self, descriptor: ListStateDescriptor[Any]) -> ListState[Any]:
        """Union redistributed list state."""
        return self._get(descriptor, UNION)

    def _get(self, descriptor: ListStateDescriptor[Any], mode: str) -> OperatorListState:
        if not isinstance(descriptor, ListStateDescriptor):
            raise PipelineError(
                f"operator {self._uid!r}: operator state needs a ListStateDescriptor, got {type(descriptor).__name__}"
            )
        if descriptor.ttl_config is not None:
            raise PipelineError(
                f"operator {self._uid!r}: operator state {descriptor.name!r} cannot have a time-to-live (as in "
                "Flink, TTL is for keyed state): remove enable_time_to_live(...) from its descriptor"
            )
        descriptor.serializer = with_declared(descriptor.serializer, self._declared)
        known = self._states.get(descriptor.name)
        if known is not None:
            if known.mode != mode:
                raise PipelineError(
                    f"operator {self._uid!r}: operator state {descriptor.name!r} is already registered "
                    f"as {known.mode} list state, not {mode} list state"
                )
            return known.state
        elements: list[Any] = []
        raw = self._raw.pop(descriptor.name, None)
        if raw is not None:
            serializer = descriptor.serializer
            if raw.mode != mode:
                raise RestoreError(
                    f"operator {self._uid!r}: operator state {descriptor.name!r} was {raw.mode} list state "
                    f"in the snapshot, now requested as {mode} list state"
                )
            if raw.serializer_id != serializer.serializer_id:
                raise RestoreError(
                    f"operator {self._uid!r}: operator state {descriptor.name!r} was written with serializer "
                    f"{raw.serializer_id!r} but its descriptor declares {serializer.serializer_id!r}"
                )
            try:
                elements = [serializer.decode(data) for data in raw.elements]
            except SerializationError as exc:
                raise RestoreError(
                    f"operator {self._uid!r}: operator state {descriptor.name!r} cannot be decoded by its "
                    f"descriptor's serializer: {exc}"
                ) from exc
        state = OperatorListState(elements)
        self._states[descriptor.name] = _Registered(descriptor, mode, state)
        return state

    def snapshot(self) -> SnapshotRunner[list[StateHandle]]:
        """Encodes the lists now (operator state is small: perfect isolation); the runner writes.

        An encoding error is raised by the returned callable, so that the checkpoint is declined
        from the background part like any other snapshot failure.
        """
        states: dict[str, list[Any]] = {}
        error: SerializationError | None = None
        for state_name, reg in self._states.items():
            serializer = reg.descriptor.serializer
            try:
                encoded = [serializer.encode(item) for item in reg.state._items]
            except SerializationError as exc:
                error = SerializationError(f"operator {self._uid!r}: operator state {state_name!r}: {exc}")
                break
            states[state_name] = [reg.mode, serializer.serializer_id, encoded]
        for state_name, kept in self._raw.items():
            states[state_name] = [kept.mode, kept.serializer_id, kept.elements]
        name = f"{safe_uid(self._uid)}-op-{self._subtask}.opstate"

        def run(writer: SnapshotWriter) -> list[StateHandle]:
            if error is not None:
                raise error
            if not states:
                return []
            document = {"format": FORMAT, "version": VERSION, "states": states}
            return [writer.write(name, KEY_SERIALIZER.encode(document))]

        def size() -> int:
            return sum(len(element) for _, _, elements in states.values() for element in elements)

        return SnapshotRunner(run, size=size)

    def restore(
        self,
        handles_by_old_subtask: Sequence[Sequence[StateHandle]],
        reader: SnapshotReader,
        subtask_index: int,
        parallelism: int,
    ) -> None:
        """Loads and redistributes the operator state of every old subtask (in old-subtask order)."""
        if not 0 <= subtask_index < parallelism:
            raise RestoreError(f"operator {self._uid!r}: subtask {subtask_index} of {parallelism} is invalid")
        same_parallelism = len(handles_by_old_subtask) == parallelism
        merged: dict[str, _Raw] = {}
        for old_index, handles in enumerate(handles_by_old_subtask):
            for handle in handles:
                for state_name, (mode, serializer_id, elements) in self._read(handle, reader).items():
                    into = merged.setdefault(state_name, _Raw(mode, serializer_id, []))
                    if (into.mode, into.serializer_id) != (mode, serializer_id):
                        raise RestoreError(
                            f"operator {self._uid!r}: operator state {state_name!r} appears as both "
                            f"{into.mode}/{into.serializer_id} and {mode}/{serializer_id}"
                        )
                    if mode == UNION or not same_parallelism or old_index == subtask_index:
                        into.elements.extend(elements)
        for state_name, raw in merged.items():
            if raw.mode == SPLIT and not same_parallelism:
                start, end = even_slice(len(raw.elements), subtask_index, parallelism)
                raw.elements = raw.elements[start:end]
            self._raw[state_name] = raw
        self._restored = self._restored or any(handles_by_old_subtask) or bool(merged)

    def _read(self, handle: StateHandle, reader: SnapshotReader) -> dict[str, tuple[str, str, list[bytes]]]:
        """The states of one file; ``CorruptStateError`` when it does not decode (restarting cannot mend that)."""
        try:
            document = KEY_SERIALIZER.decode(reader.read(handle))
        except SerializationError as exc:
            raise CorruptStateError(f"operator state file {handle.path} is corrupted: {exc}") from exc
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise CorruptStateError(
                f"operator state file {handle.path} is corrupted: it is not a streamjob operator state file"
            )
        if document.get("version") != VERSION:
            raise RestoreError(
                f"operator state file {handle.path} has format version {document.get('version')!r}; "
                f"this streamjob reads version {VERSION}"
            )
        out: dict[str, tuple[str, str, list[bytes]]] = {}
        try:
            for state_name, (mode, serializer_id, elements) in document["states"].items():
                if mode not in (SPLIT, UNION) or not all(isinstance(e, bytes) for e in elements):
                    raise ValueError(f"state {state_name!r} has mode {mode!r} or elements that are not bytes")
                out[str(state_name)] = (str(mode), str(serializer_id), list(elements))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise CorruptStateError(f"operator state file {handle.path} is corrupted: {exc}") from exc
        return out


__all__ = ["OperatorListState", "OperatorStateStore", "even_slice"]
