"""Wire encodings: record batches (pickle that names no global but allowed classes) and control messages.

Record batches travel only between the slots of one job, but a data port is still a network
port, so decoding a batch must never run code a peer chose. A batch starts with one format byte:

- ``PLAIN``: records of built-in values only (None, bool, int, float, str, bytes, bytearray and
  tuples, lists, dicts, sets, frozensets of them). Pickle protocol 5 writes all of these with its
  own opcodes, so the decoder refuses every global: with no class or function on its stack no
  opcode can call anything.
- ``CLASSES``: records holding instances of classes. The decoder resolves a global only by an exact
  ``(module, qualname)`` lookup in the allow-list: a few built-in value classes (datetime, Decimal,
  UUID, ...) plus the classes the job registered (``env.register_type``) or defined at the top of
  its own modules (collected by ``loader.job_record_classes`` when the job is loaded). Nothing is
  imported and no attribute is traversed, so dotted names (``build.__class__``), functions, code
  objects, ``type``, modules and ``copyreg`` helpers are never reachable; a ``__setstate__`` or
  ``__reduce__`` that runs is the job's own code. Allowed job classes are checked after each such
  batch: a batch that changed one of them (pickle's BUILD on a class object) is refused and undone.

The encoder picks the format: a batch whose pickle names no class (no ``STACK_GLOBAL`` byte) is
``PLAIN``. Measured (``bench/codec.py``): for the typical plain batches (tuples of str, int and
float) this pickle encodes and decodes faster than msgpack, whose encoder must first check every
value's exact type (it writes a tuple, a list and a named tuple alike as an array); msgpack
carries the control messages. One thing the allow-list cannot bound: CPython's unpickler sizes
its memo from a PUT opcode's index, so a forged batch of a few bytes can make it allocate up to
the process's memory limit; that fails as ``MemoryError`` (reported as ``SerializationError``)
or ends the slot like any forged batch ends the attempt. Every failure is a
``SerializationError`` naming the class and the fix. Callers: ``network`` (encode/decode of DATA
frames), ``slot`` (builds the codec), the JobMaster (``pack``/``unpack``).
"""

from __future__ import annotations

import collections
import datetime
import decimal
import io
import pickle
import uuid
from collections.abc import Iterable
from typing import Any, Final

import msgpack

from streamjob.worker.errors import SerializationError

PLAIN: Final = 1
CLASSES: Final = 2
_PLAIN_BYTE: Final = bytes([PLAIN])
_CLASSES_BYTE: Final = bytes([CLASSES])
_STACK_GLOBAL: Final = pickle.STACK_GLOBAL  # protocol 5 names every class with this opcode

BUILTIN_CLASSES: Final[tuple[type, ...]] = (
    complex,
    datetime.datetime,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    datetime.timezone,
    decimal.Decimal,
    uuid.UUID,
    collections.OrderedDict,
    collections.deque,
)
"""Value classes of the standard library a record may hold (their reduction names only themselves)."""

_FIX = "env.register_type(cls) in the job allows another class"


def _qualified(cls: type) -> tuple[str, str]:
    return cls.__module__, cls.__qualname__


class RecordCodec:
    """Encodes lists of records; decoding names no global outside the allow-list of classes."""

    def __init__(self, allowed_types: Iterable[type] = ()) -> None:
        self._classes: dict[tuple[str, str], type] = {_qualified(c): c for c in BUILTIN_CLASSES}
        for cls in allowed_types:
            if not isinstance(cls, type):
                raise SerializationError(f"register_type takes a class, got {type(cls).__name__}")
            self._classes[_qualified(cls)] = cls

    def allows(self, module: str, name: str) -> bool:
        """Whether a pickled global ``module.name`` may be resolved (an exact allowed class)."""
        return (module, name) in self._classes

    def encode(self, records: list[Any]) -> bytes:
        """A batch as bytes: the format byte, then pickle protocol 5."""
        buffer = io.BytesIO()
        buffer.write(_PLAIN_BYTE)
        try:
            pickle.Pickler(buffer, protocol=5).dump(records)
        except (pickle.PicklingError, TypeError, AttributeError, ValueError, RecursionError) as err:
            raise SerializationError(
                f"a record cannot be sent between workers ({err}); records must be plain values "
                "(int, str, float, tuple, list, dict, ...) or classes defined at module level in the job's code"
            ) from err
        data = buffer.getvalue()
        if _STACK_GLOBAL in data:  # a class may be named (the byte may also be part of a value: no harm)
            return _CLASSES_BYTE + data[1:]
        return data

    def decode(self, data: bytes | memoryview) -> list[Any]:
        """A batch from bytes; refuses any global that is not an allowed class."""
        view = memoryview(data)
        if len(view) == 0:
            raise SerializationError("an empty record batch arrived: the peer sent a damaged frame")
        kind = view[0]
        if kind == PLAIN:
            unpickler: pickle.Unpickler = _PlainUnpickler(io.BytesIO(view[1:]))
        elif kind == CLASSES:
            unpickler = _ClassUnpickler(io.BytesIO(view[1:]), self._classes)
        else:
            raise SerializationError(
                f"a record batch has the unknown format {kind}: is the peer running the same streamjob version?"
            )
        try:
            records = unpickler.load()
        except SerializationError:
            raise
        except Exception as err:  # every parse error of a damaged batch: pickle's, and the job's __setstate__
            raise SerializationError(f"a record batch could not be decoded ({type(err).__name__}: {err})") from err
        finally:
            if isinstance(unpickler, _ClassUnpickler):
                _undo_class_changes(unpickler.snapshots)
        if type(records) is not list:
            raise SerializationError(f"a record batch decoded to {type(records).__name__}, not a list of records")
        return records


_ClassSnapshot = tuple[dict[str, Any], tuple[type, ...]]


def _snapshot(cls: type) -> _ClassSnapshot:
    return dict(vars(cls)), cls.__bases__


def _undo_class_changes(snapshots: dict[type, _ClassSnapshot]) -> None:
    """Refuses (and undoes) a batch that changed a class it named: pickle's BUILD on a class sets attributes."""
    for cls, (attrs, bases) in snapshots.items():
        current = vars(cls)
        if current.keys() == attrs.keys() and all(current[k] is v for k, v in attrs.items()) and cls.__bases__ == bases:
            continue
        for key in [k for k in current if k not in attrs]:
            delattr(cls, key)
        for key, value in attrs.items():
            if current.get(key) is not value:
                setattr(cls, key, value)
        if cls.__bases__ != bases:
            cls.__bases__ = bases
        raise SerializationError(
            f"a record batch changed the class {cls.__module__}.{cls.__qualname__} while it "
            "was decoded; refused (a forged batch, or a __setstate__ of the job that sets "
            "class attributes)"
        )


class _PlainUnpickler(pickle.Unpickler):
    """Decodes a batch of built-in values: no global at all."""

    def find_class(self, module: str, name: str) -> Any:
        raise SerializationError(
            f"refusing to decode {module}.{name}: a batch of plain values names no class (a damaged or forged batch)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise SerializationError("refusing a persistent id in a record batch (a damaged or forged batch)")


class _ClassUnpickler(pickle.Unpickler):
    """Resolves a global only as an exact allowed class; never imports or traverses attributes."""

    def __init__(self, stream: io.BytesIO, classes: dict[tuple[str, str], type]) -> None:
        super().__init__(stream)
        self._classes = classes
        self.snapshots: dict[type, _ClassSnapshot] = {}

    def find_class(self, module: str, name: str) -> Any:
        found = self._classes.get((module, name))
        if found is None:
            raise SerializationError(
                f"refusing to decode {module}.{name} in a record batch: only built-in values and the job's "
                f"own classes may cross the network; if it is a class of the job, {_FIX}"
            )
        if found not in self.snapshots and found not in BUILTIN_CLASSES:
            self.snapshots[found] = _snapshot(found)
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise SerializationError("refusing a persistent id in a record batch (a damaged or forged batch)")


def pack(message: Any) -> bytes:
    """A control message (dicts, lists, str, int, float, bytes, None)."""
    return msgpack.packb(message, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(data: bytes) -> Any:
    """A control message from bytes; msgpack never runs code, and its limits follow the data's length."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False)
