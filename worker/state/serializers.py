"""Serializers: how state values become the bytes a snapshot stores, and back.

``SafeSerializer`` is the default for every state. It is msgpack with extension types for
tuple, set, frozenset, datetime, date, time, timedelta, Decimal, big ints, and, by field
encoding, for dataclasses, named tuples, enums and plain classes (instances that are just their
``__dict__``, like the seeds' ``SensorReading``) whose class is declared: by the descriptor's type
hints, by ``SafeSerializer(declared_types=...)``, or as one of the job's allowed classes (those
defined at the top of the job's modules and those passed to ``env.register_type``, added by the
runtime). A field-encoded value is ``[type reference, fields]``; decoding resolves the type
reference only by an exact match with a declared class, never imports, and rebuilds the object
without running its ``__init__`` (as pickle does): a writer to the checkpoint bucket cannot get
code execution in the workers through state.

``PickleSerializer`` is an explicit opt-in per state. It round-trips any picklable object, but
unpickling runs code chosen by whoever wrote the bytes: declare it only when the checkpoint
storage is as trusted as the job's code.

Callers: the state descriptors (which pick the serializer), the keyed state backends and the
operator state store (encode on snapshot / rocksdb write, decode on restore / rocksdb read).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import pickle
import threading
import typing
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar, Final

import msgpack

from streamjob.worker.errors import SerializationError

_EXT_TUPLE: Final = 1
_EXT_SET: Final = 2
_EXT_FROZENSET: Final = 3
_EXT_DATETIME: Final = 4
_EXT_DATE: Final = 5
_EXT_DECIMAL: Final = 6
_EXT_DATACLASS: Final = 7
_EXT_BIGINT: Final = 8
_EXT_TIMEDELTA: Final = 9
_EXT_TIME: Final = 10
_EXT_ENUM: Final = 11
_EXT_NAMEDTUPLE: Final = 12
_EXT_OBJECT: Final = 13
_HEAP_TYPE: Final = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class defined by a class statement, not in C


class Serializer(ABC):
    """Encodes state values to bytes and back; must be safe to call from several threads."""

    plain_columns: ClassVar[bool] = False
    """True if ``decode(encode(v))`` is exactly msgpack's round trip for plain scalars and flat tuples
    of them: a snapshot may then store many such values as one msgpack column (``columns.py``)."""

    @property
    def serializer_id(self) -> str:
        """Recorded in snapshots; a restore refuses state written by a different serializer."""
        kind = type(self)
        return f"custom:{kind.__module__}.{kind.__qualname__}"

    @abstractmethod
    def encode(self, value: Any) -> bytes:
        """The bytes of ``value``; raises SerializationError when it cannot be encoded."""

    @abstractmethod
    def decode(self, data: bytes) -> Any:
        """The value of ``data``; raises SerializationError when the bytes are not valid."""


def type_name(cls: type) -> str:
    """The name a declared class is recorded under in encoded state."""
    return f"{cls.__module__}.{cls.__qualname__}"


def is_plain_class(cls: object) -> bool:
    """Whether instances of ``cls`` are entirely their ``__dict__`` (Flink's POJO, in Python terms).

    A class defined by a class statement (as are all its bases but ``object``) whose instances
    have a ``__dict__`` and no slots, and not a dataclass, named tuple or enum (those have their
    own encodings).
    """
    if not isinstance(cls, type) or cls.__module__ == "builtins" or dataclasses.is_dataclass(cls):
        return False
    if issubclass(cls, enum.Enum | tuple) or not cls.__dictoffset__:
        return False
    for base in cls.__mro__[:-1]:
        if not base.__flags__ & _HEAP_TYPE or vars(base).get("__slots__"):
            return False
    return cls.__mro__[-1] is object


def _declarable(cls: object) -> bool:
    """Whether ``cls`` can be field-encoded: a dataclass, a named tuple, an enum or a plain class."""
    if not isinstance(cls, type):
        return False
    return dataclasses.is_dataclass(cls) or issubclass(cls, enum.Enum) or _is_named_tuple(cls) or is_plain_class(cls)


def field_encodable(classes: Iterable[type]) -> tuple[type, ...]:
    """The classes among ``classes`` that ``SafeSerializer`` can declare (in order, without duplicates)."""
    return tuple(dict.fromkeys(cls for cls in classes if _declarable(cls)))


def _is_named_tuple(cls: type) -> bool:
    return issubclass(cls, tuple) and isinstance(getattr(cls, "_fields", None), tuple)


def collect_declared_types(*hints: object) -> tuple[type, ...]:
    """The dataclasses, named tuples, enums and plain classes named by type hints (with nested fields, generic args)."""
    found: dict[type, None] = {}
    pending: list[object] = list(hints)
    while pending:
        hint = pending.pop()
        if hint is None or isinstance(hint, str):
            continue
        args = typing.get_args(hint)
        if args:
            pending.extend(args)
            continue
        if not isinstance(hint, type) or hint in found:
            continue
        if dataclasses.is_dataclass(hint):
            found[hint] = None
            try:
                field_hints = typing.get_type_hints(hint)
            except Exception:  # unresolvable forward references: declare nested types explicitly
                field_hints = {}
            pending.extend(field_hints.values())
        elif issubclass(hint, enum.Enum):
            found[hint] = None
        elif _is_named_tuple(hint):
            found[hint] = None
            pending.extend(typing.get_type_hints(hint).values())
        elif is_plain_class(hint):
            found[hint] = None
    return tuple(found)


def _ext_header(code: int, size: int) -> bytes:
    """The msgpack header of an extension value of ``size`` bytes (as msgpack itself writes it)."""
    fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}.get(size)
    if fixed is not None:
        return bytes((fixed, code))
    if size < 256:
        return bytes((0xC7, size, code))
    if size < 65536:
        return b"\xc8" + size.to_bytes(2, "big") + bytes((code,))
    return b"\xc9" + size.to_bytes(4, "big") + bytes((code,))


def _flat_tuple(local: threading.local, value: tuple[Any, ...]) -> bytes | None:
    """A tuple of plain values, encoded byte-for-byte as the tuple extension, without a Python hook per value.

    Returns None for tuples holding anything that needs the extension hook (nested tuples, sets,
    big ints, declared classes...), which then take the general path.
    """
    try:
        inner = local.flat_packer
    except AttributeError:
        inner = local.flat_packer = msgpack.Packer(use_bin_type=True, strict_types=True)
    try:
        payload: bytes = inner.pack(list(value))
    except (TypeError, ValueError, OverflowError):
        local.flat_packer = msgpack.Packer(use_bin_type=True, strict_types=True)
        return None
    return _ext_header(_EXT_TUPLE, len(payload)) + payload


class SafeSerializer(Serializer):
    """msgpack with typed extensions; only declared classes are ever instantiated.

    ``SafeSerializer(declared_types=(Order, Side))`` declares classes explicitly; descriptors do this for
    the type hints they were given, and the runtime adds the job's allowed classes. Dataclasses and
    plain classes are rebuilt like pickle does (``__new__`` then the fields), without running ``__init__``.
    """

    __slots__ = ("_by_name", "_by_type", "_hook", "_local")
    plain_columns: ClassVar[bool] = True

    def __init__(self, declared_types: Iterable[type] = ()) -> None:
        self._local = threading.local()  # one Packer per thread (Packers are not thread-safe)
        self._hook = self._ext_hook
        self._by_type: dict[type, str] = {}
        self._by_name: dict[str, type] = {}
        for cls in declared_types:
            if not _declarable(cls):
                raise SerializationError(
                    "SafeSerializer can only declare dataclasses, named tuples, enums and plain classes "
                    f"(no __slots__, no built-in base), not {type_name(cls) if isinstance(cls, type) else repr(cls)}"
                )
            self._by_type[cls] = type_name(cls)
            self._by_name[type_name(cls)] = cls

    def __reduce__(self) -> tuple[type[SafeSerializer], tuple[tuple[type, ...]]]:
        """Picklable and copyable (descriptors may travel with user functions)."""
        return SafeSerializer, (tuple(self._by_type),)

    @property
    def serializer_id(self) -> str:
        """All safe serializers read each other's bytes (declared types may grow)."""
        return "safe"

    @property
    def declared_types(self) -> tuple[type, ...]:
        """The classes this serializer may encode and instantiate."""
        return tuple(self._by_type)

    def encode(self, value: Any) -> bytes:
        """Packs ``value``; undeclared classes raise SerializationError."""
        local = self._local
        if type(value) is tuple:
            flat = _flat_tuple(local, value)
            if flat is not None:
                return flat
        try:
            packer = local.packer
        except AttributeError:
            packer = local.packer = msgpack.Packer(default=self._default, use_bin_type=True, strict_types=True)
        try:
            return packer.pack(value)  # type: ignore[no-any-return]
        except SerializationError:
            del local.packer
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            del local.packer
            raise SerializationError(f"cannot encode a {type(value).__qualname__} value: {exc}") from exc

    def decode(self, data: bytes) -> Any:
        """Unpacks ``data``; an undeclared class name raises SerializationError."""
        try:
            return msgpack.unpackb(data, ext_hook=self._hook, strict_map_key=False)
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(f"cannot decode state bytes: {exc}") from exc

    def _pack(self, value: Any) -> bytes:
        return msgpack.packb(value, default=self._default, use_bin_type=True, strict_types=True)  # type: ignore[no-any-return]

    def _default(self, value: Any) -> msgpack.ExtType:
        kind = type(value)
        if kind is tuple:
            return msgpack.ExtType(_EXT_TUPLE, self._pack(list(value)))
        if kind is set:
            return msgpack.ExtType(_EXT_SET, self._pack(list(value)))
        if kind is frozenset:
            return msgpack.ExtType(_EXT_FROZENSET, self._pack(list(value)))
        if kind is int:
            return msgpack.ExtType(_EXT_BIGINT, str(value).encode("ascii"))
        if kind is dt.datetime:
            zone = getattr(value.tzinfo, "key", None)
            return msgpack.ExtType(_EXT_DATETIME, self._pack([value.isoformat(), zone]))
        if kind is dt.date:
            return msgpack.ExtType(_EXT_DATE, value.isoformat().encode("ascii"))
        if kind is dt.time:
            return msgpack.ExtType(_EXT_TIME, value.isoformat().encode("ascii"))
        if kind is dt.timedelta:
            return msgpack.ExtType(_EXT_TIMEDELTA, self._pack([value.days, value.seconds, value.microseconds]))
        if kind is decimal.Decimal:
            return msgpack.ExtType(_EXT_DECIMAL, str(value).encode("ascii"))
        name = self._by_type.get(kind)
        if name is not None:
            if isinstance(value, enum.Enum):
                return msgpack.ExtType(_EXT_ENUM, self._pack([name, value.value]))
            if isinstance(value, tuple):
                return msgpack.ExtType(_EXT_NAMEDTUPLE, self._pack([name, list(value)]))
            if dataclasses.is_dataclass(value):
                fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
                return msgpack.ExtType(_EXT_DATACLASS, self._pack([name, fields]))
            return msgpack.ExtType(_EXT_OBJECT, self._pack([name, vars(value)]))
        raise SerializationError(unsupported_message(kind))

    def _ext_hook(self, code: int, data: bytes) -> Any:
        if code == _EXT_TUPLE:
            return tuple(self.decode(data))
        if code == _EXT_SET:
            return set(self.decode(data))
        if code == _EXT_FROZENSET:
            return frozenset(self.decode(data))
        if code == _EXT_BIGINT:
            return int(data.decode("ascii"))
        if code == _EXT_DATETIME:
            text, zone = self.decode(data)
            value = dt.datetime.fromisoformat(text)
            if zone is not None:
                from zoneinfo import ZoneInfo

                value = value.replace(tzinfo=ZoneInfo(zone))
            return value
        if code == _EXT_DATE:
            return dt.date.fromisoformat(data.decode("ascii"))
        if code == _EXT_TIME:
            return dt.time.fromisoformat(data.decode("ascii"))
        if code == _EXT_TIMEDELTA:
            days, seconds, micros = self.decode(data)
            return dt.timedelta(days=days, seconds=seconds, microseconds=micros)
        if code == _EXT_DECIMAL:
            return decimal.Decimal(data.decode("ascii"))
        if code == _EXT_DATACLASS:
            name, fields = self.decode(data)
            cls = self._declared(name)
            names = {f.name for f in dataclasses.fields(cls)}
            obj: Any = object.__new__(cls)
            for field_name, field_value in _fields(name, fields):
                if field_name not in names:
                    raise SerializationError(f"state holds a {name} with an unknown field {field_name!r}")
                object.__setattr__(obj, field_name, field_value)
            return obj
        if code == _EXT_OBJECT:
            name, fields = self.decode(data)
            cls = self._declared(name)
            if not is_plain_class(cls):
                raise SerializationError(f"state holds fields of {name}, which is not a plain class")
            obj = object.__new__(cls)
            obj.__dict__.update(_fields(name, fields))
            return obj
        if code == _EXT_ENUM:
            name, raw = self.decode(data)
            return self._declared(name)(raw)
        if code == _EXT_NAMEDTUPLE:
            name, items = self.decode(data)
            return self._declared(name)(*items)
        raise SerializationError(f"unknown msgpack extension type {code} in state bytes")

    def _declared(self, name: object) -> type:
        cls = self._by_name.get(name) if isinstance(name, str) else None
        if cls is None:
            raise SerializationError(
                f"state holds a value of class {name!r}, which is not among this state's declared classes "
                "(the job's own classes, env.register_type(...), the descriptor's type hint); nothing was "
                "imported or instantiated"
            )
        return cls


def _fields(name: object, fields: object) -> list[tuple[str, Any]]:
    """The (name, value) pairs of a field-encoded object; refuses anything but plain attribute names."""
    if not isinstance(fields, dict):
        raise SerializationError(f"state holds a {name} whose fields are not a map")
    for field_name in fields:
        if not isinstance(field_name, str) or not field_name.isidentifier() or field_name.startswith("__"):
            raise SerializationError(f"state holds a {name} with an invalid field name {field_name!r}")
    return list(fields.items())


def unsupported_message(kind: type) -> str:
    """Why ``SafeSerializer`` refused a value of ``kind``, and the one line that fixes it."""
    name = kind.__name__
    if _declarable(kind):
        return (
            f"cannot store a value of type {type_name(kind)}: the class is not one of the job's allowed "
            f"classes; fix: env.register_type({name}) in the job (or name it in the state descriptor's type hint)"
        )
    return (
        f"cannot store a value of type {type_name(kind)}: SafeSerializer stores built-in values, dataclasses, "
        "named tuples, enums and plain classes (no __slots__, no built-in base); fix: convert it to one of "
        "those, or pass serializer=PickleSerializer() to the state descriptor (window contents: "
        "env.set_internal_state_serializer(PickleSerializer()); pickle only with trusted checkpoint storage)"
    )


def with_declared(serializer: Serializer, types: Iterable[type]) -> Serializer:
    """``serializer`` declaring ``types`` too if it is a plain ``SafeSerializer``; any other serializer as is.

    How the runtime adds the job's allowed classes to the states it registers.
    """
    if type(serializer) is not SafeSerializer:
        return serializer
    known = serializer.declared_types
    missing = [t for t in types if t not in known]
    return SafeSerializer([*known, *missing]) if missing else serializer


class PickleSerializer(Serializer):
    """Pickle, for state that the safe serializer cannot represent. EXPLICIT OPT-IN ONLY.

    Risk: restoring a snapshot unpickles its bytes, and unpickling executes code chosen by
    whoever wrote them. Anyone able to write to the checkpoint or savepoint storage can then run
    code in every worker. Use it only when that storage is as trusted as the job image.
    """

    protocol: ClassVar[int] = pickle.HIGHEST_PROTOCOL

    @property
    def serializer_id(self) -> str:
        """Recorded in snapshots; pickled state restores only into a PickleSerializer state."""
        return "pickle"

    def encode(self, value: Any) -> bytes:
        """Pickles ``value``."""
        try:
            return pickle.dumps(value, protocol=self.protocol)
        except Exception as exc:
            raise SerializationError(f"cannot pickle a {type(value).__qualname__} value: {exc}") from exc

    def decode(self, data: bytes) -> Any:
        """Unpickles ``data`` (runs code chosen by the writer of the bytes; see the class docstring)."""
        try:
            return pickle.loads(data)
        except Exception as exc:
            raise SerializationError(f"cannot unpickle state bytes: {exc}") from exc


KEY_SERIALIZER: Final = SafeSerializer()
"""Encodes keys (str, int, float, bool, bytes, None, tuples) in snapshots and rocksdb rows."""


__all__ = [
    "KEY_SERIALIZER",
    "PickleSerializer",
    "SafeSerializer",
    "Serializer",
    "collect_declared_types",
    "field_encodable",
    "is_plain_class",
    "type_name",
    "unsupported_message",
    "with_declared",
]
