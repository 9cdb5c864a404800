"""The record batches' wire encoding: msgpack, or pickle naming only allowed classes.

Every other message (control, handshake, events) is declared in ``protocol.messages``.

Record batches travel only between the slots of one job, but a data port is still a network
port, so decoding a batch must never run code a peer chose. A batch starts with one format byte:

- ``VALUES`` (msgpack): records built only of None, bool, int (64-bit), float, str, bytes, lists
  and dicts. msgpack's strict mode writes exactly these types itself and hands anything else
  (a tuple, a subclass, a big int) to a hook that abandons msgpack for the batch, so no check is
  needed and decoding restores the exact types.
- ``ROWS`` (msgpack): records that are all tuples of one width, of such values: written as one
  array per column (fast to pack and check) and zipped back into tuples.
- ``PICKLE``: everything else: nested tuples, big ints, sets, instances of classes. Its opcodes are
  checked first (``pickle_scan``: only what protocol 5 writes for records, every length inside
  the data, no memo index or bytearray size that makes CPython's unpickler allocate gigabytes),
  then the unpickler resolves a global only by an exact ``(module, qualname)`` lookup in the
  allow-list: a few built-in value classes (datetime, Decimal, UUID, ...) plus the classes the job
  registered (``env.register_type``) or defined at the top of its own modules (collected by
  ``loader.job_record_classes`` when the job is loaded). Nothing is imported and no attribute is
  traversed, so dotted names (``build.__class__``), functions, code objects, ``type``, modules and
  ``copyreg`` helpers are never reachable and REDUCE/NEWOBJ can call only an allowed class; a
  ``__setstate__`` or ``__reduce__`` that runs is the job's own code. A batch that changed a class
  it named (BUILD on a class object sets attributes) is refused and the change undone.

msgpack decoding builds nothing but values and bounds every length by the data's. Measured with
``bench/codec.py`` against the pickle-only codec this replaced: tuple batches cost about the same
(pickle decoding alone would need the Python-level opcode check, several times dearer). Every
failure is a ``SerializationError`` naming the class and the fix. Callers: ``network``
(encode/decode of DATA frames) and ``slot`` (builds the codec).
"""

from __future__ import annotations

import collections
import datetime
import decimal
import io
import pickle
import uuid
from _operator import countOf, itemgetter  # not `operator`: the repository's operator/ package may shadow it
from collections.abc import Iterable
from typing import Any, Final

import msgpack

from streamjob.worker.errors import SerializationError
from streamjob.worker.runtime.pickle_scan import check_opcodes

VALUES: Final = 1
ROWS: Final = 2
PICKLE: Final = 3
_VALUES_BYTE: Final = bytes([VALUES])
_ROWS_BYTE: Final = bytes([ROWS])
_PICKLE_BYTE: Final = bytes([PICKLE])
_MAX_ROW_WIDTH: Final = 32
_COLUMN: Final = tuple(itemgetter(i) for i in range(_MAX_ROW_WIDTH))


class _NotPlain(Exception):
    """Raised by msgpack's default hook: the batch holds a value msgpack does not write exactly."""


def _not_plain(value: object) -> object:
    raise _NotPlain


def _packer() -> msgpack.Packer:
    return msgpack.Packer(use_bin_type=True, strict_types=True, default=_not_plain)


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
        self._packer = _packer()

    def allows(self, module: str, name: str) -> bool:
        """Whether a pickled global ``module.name`` may be resolved (an exact allowed class)."""
        return (module, name) in self._classes

    def encode(self, records: list[Any]) -> bytes:
        """A batch as bytes: the format byte, then msgpack for plain values, else pickle protocol 5."""
        packer = self._packer
        try:
            if countOf(map(type, records), tuple) != len(records) or not records:
                return _VALUES_BYTE + bytes(packer.pack(records))
            width = len(records[0])
            if 0 < width <= _MAX_ROW_WIDTH:
                columns = [list(map(_COLUMN[i], records)) for i in range(width)]  # IndexError: a shorter row
                if sum(map(len, records)) == width * len(records):  # and so no longer one
                    return _ROWS_BYTE + bytes(packer.pack(columns))
        except (_NotPlain, OverflowError, ValueError, IndexError):  # a class, a tuple inside, a big int, ...
            packer.reset()
        return self._encode_pickle(records)

    def _encode_pickle(self, records: list[Any]) -> bytes:
        buffer = io.BytesIO()
        buffer.write(_PICKLE_BYTE)
        try:
            pickle.Pickler(buffer, protocol=5).dump(records)
        except (pickle.PicklingError, TypeError, AttributeError, ValueError, RecursionError) as err:
            raise SerializationError(
                f"a record cannot be sent between workers ({err}); records must be plain values "
                "(int, str, float, tuple, list, dict, ...) or classes defined at module level in the job's code"
            ) from err
        return buffer.getvalue()

    def decode(self, data: bytes | memoryview) -> list[Any]:
        """A batch from bytes; refuses any global that is not an allowed class."""
        view = memoryview(data)
        if len(view) == 0:
            raise SerializationError("an empty record batch arrived: the peer sent a damaged frame")
        kind = view[0]
        if kind in (VALUES, ROWS):
            try:
                records = msgpack.unpackb(view[1:], raw=False, strict_map_key=False)
                if kind == ROWS:
                    if type(records) is not list or not all(type(c) is list for c in records):
                        raise SerializationError("a batch of rows does not hold columns (a damaged or forged batch)")
                    return list(zip(*records, strict=True))
            except SerializationError:
                raise
            except Exception as err:  # msgpack's errors, unhashable keys, columns of unequal length
                raise SerializationError(f"a record batch could not be decoded ({type(err).__name__}: {err})") from err
        elif kind == PICKLE:
            records = self._decode_pickle(view[1:])
        else:
            raise SerializationError(
                f"a record batch has the unknown format {kind}: is the peer running the same streamjob version?"
            )
        if type(records) is not list:
            raise SerializationError(f"a record batch decoded to {type(records).__name__}, not a list of records")
        return records

    def _decode_pickle(self, view: memoryview) -> Any:
        data = view.tobytes()
        check_opcodes(data)
        unpickler = _ClassUnpickler(io.BytesIO(data), self._classes)
        try:
            return unpickler.load()
        except SerializationError:
            raise
        except Exception as err:  # every parse error of a damaged batch: pickle's, and the job's __setstate__
            raise SerializationError(f"a record batch could not be decoded ({type(err).__name__}: {err})") from err
        finally:
            _undo_class_changes(unpickler.snapshots)


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
