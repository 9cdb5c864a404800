"""Key groups: the unit in which keyed state is partitioned, routed and redistributed on rescale.

Every key maps to one of ``max_parallelism`` key groups by a hash that is stable across
processes, runs and machines (BLAKE2b of a canonical, typed encoding of the key; never Python's
randomized ``hash()``). A subtask owns a contiguous, inclusive range of key groups, computed with
Flink's formula, so that a snapshot taken at one parallelism restores at another.

Callers: the runtime's key-by partitioner (``KeyGroupAssigner.assign`` per record), the keyed
state backends (key groups of snapshot chunks, rescale filtering) and the graph builder
(``key_group_range`` / ``operator_index_for`` / ``validate_parallelism``).

Keys equal in Python map to the same group (``1``, ``1.0`` and ``True`` are one key, as in a dict),
so a cache keyed by the key itself stays consistent.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Hashable
from typing import Any, Final

from streamjob.worker.errors import ConfigError, PipelineError

MAX_MAX_PARALLELISM: Final = 32768
DEFAULT_CACHE_SIZE: Final = 1 << 17

_T_NONE: Final = b"\x00"
_T_INT: Final = b"\x01"
_T_FLOAT: Final = b"\x02"
_T_STR: Final = b"\x03"
_T_BYTES: Final = b"\x04"
_T_TUPLE: Final = b"\x05"
_PACK_DOUBLE: Final = struct.Struct(">d").pack
_PERSON: Final = b"streamjob-kg1"
_BASE_HASH: Final = hashlib.blake2b(digest_size=8, person=_PERSON)


def unsupported_key_message(key: object) -> str:
    """The user-facing message for a key that cannot be partitioned."""
    kind = type(key)
    return (
        f"cannot partition by a key of type {kind.__module__}.{kind.__qualname__}: keys must be "
        "str, int, float, bool, bytes, None or tuples of those; make your key_by function return "
        "a str, an int or a tuple (e.g. key_by(lambda e: (e.user_id, e.region)))"
    )


def _encode_key(key: object, out: list[bytes]) -> None:
    """Appends the canonical typed encoding of ``key``; equal keys encode equally."""
    kind = type(key)
    if kind is str:
        data = key.encode("utf-8", "surrogatepass")  # type: ignore[attr-defined]
        out.append(_T_STR)
        out.append(len(data).to_bytes(4, "big"))
        out.append(data)
    elif kind is int or kind is bool:
        value: int = key  # type: ignore[assignment]
        out.append(_T_INT)
        out.append(value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))
    elif kind is float:
        number: float = key  # type: ignore[assignment]
        if number.is_integer():
            _encode_key(int(number), out)
        else:
            out.append(_T_FLOAT)
            out.append(_PACK_DOUBLE(number))
    elif key is None:
        out.append(_T_NONE)
    elif kind is bytes:
        raw: bytes = key  # type: ignore[assignment]
        out.append(_T_BYTES)
        out.append(len(raw).to_bytes(4, "big"))
        out.append(raw)
    elif kind is tuple:
        items: tuple[object, ...] = key  # type: ignore[assignment]
        out.append(_T_TUPLE)
        out.append(len(items).to_bytes(4, "big"))
        for item in items:
            _encode_key(item, out)
    else:
        raise PipelineError(unsupported_key_message(key))


def canonical_key(key: Any) -> Any:
    """``key`` with equal-but-different-typed parts unified (``True``/``1.0`` -> ``1``).

    Byte encodings of canonical keys are equal exactly when the keys are equal, which the
    rocksdb backend relies on for its row keys. Other types are returned unchanged.
    """
    kind = type(key)
    if kind is str or kind is int or kind is bytes or key is None:
        return key
    if kind is bool:
        return int(key)
    if kind is float:
        return int(key) if key.is_integer() else key
    if kind is tuple:
        return tuple([canonical_key(item) for item in key])
    return key


def stable_key_hash(key: object) -> int:
    """A 64-bit hash of ``key`` that is the same in every process, run and machine."""
    hasher = _BASE_HASH.copy()  # cheaper than constructing blake2b with its parameters
    kind = type(key)
    if kind is str:  # fast paths: the same bytes ``_encode_key`` produces
        data = key.encode("utf-8", "surrogatepass")  # type: ignore[attr-defined]
        hasher.update(_T_STR + len(data).to_bytes(4, "big") + data)
    elif kind is int:
        value: int = key  # type: ignore[assignment]
        hasher.update(_T_INT + value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))
    else:
        parts: list[bytes] = []
        _encode_key(key, parts)
        hasher.update(b"".join(parts))
    return int.from_bytes(hasher.digest(), "big")


def validate_max_parallelism(max_parallelism: int) -> None:
    """Raises ConfigError unless ``1 <= max_parallelism <= 32768``."""
    if type(max_parallelism) is not int or not 1 <= max_parallelism <= MAX_MAX_PARALLELISM:
        raise ConfigError(
            f"max parallelism must be an integer between 1 and {MAX_MAX_PARALLELISM}, got "
            f"{max_parallelism!r}; it bounds how far the job can scale out and cannot change "
            "once state was checkpointed (128 is a good default)"
        )


def validate_parallelism(max_parallelism: int, parallelism: int) -> None:
    """Raises ConfigError unless ``1 <= parallelism <= max_parallelism`` (and maxP is valid)."""
    validate_max_parallelism(max_parallelism)
    if type(parallelism) is not int or not 1 <= parallelism <= max_parallelism:
        raise ConfigError(
            f"parallelism must be an integer between 1 and the max parallelism ({max_parallelism}), "
            f"got {parallelism!r}; lower the parallelism or raise max parallelism"
        )


def key_group_for(key: object, max_parallelism: int) -> int:
    """The key group (``0 <= kg < max_parallelism``) of ``key``; stable everywhere."""
    if type(max_parallelism) is not int or not 0 < max_parallelism <= MAX_MAX_PARALLELISM:
        validate_max_parallelism(max_parallelism)
    return stable_key_hash(key) % max_parallelism


def key_group_range(max_parallelism: int, parallelism: int, index: int) -> tuple[int, int]:
    """The inclusive key-group range owned by subtask ``index`` of ``parallelism``."""
    validate_parallelism(max_parallelism, parallelism)
    if type(index) is not int or not 0 <= index < parallelism:
        raise ConfigError(f"subtask index must be in [0, {parallelism}), got {index!r}")
    start = -(-index * max_parallelism // parallelism)
    end = -(-(index + 1) * max_parallelism // parallelism) - 1
    return start, end


def operator_index_for(key_group: int, max_parallelism: int, parallelism: int) -> int:
    """The subtask (of ``parallelism``) whose range holds ``key_group``."""
    return key_group * parallelism // max_parallelism


def ranges_overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether two inclusive key-group ranges intersect."""
    return a[0] <= b[1] and b[0] <= a[1]


class _KeyGroupCache(dict[Hashable, int]):
    """A dict from key to key group that fills itself on a miss and empties itself when full."""

    __slots__ = ("_limit", "_max_parallelism")

    def __init__(self, max_parallelism: int, limit: int) -> None:
        super().__init__()
        self._max_parallelism = max_parallelism
        self._limit = limit

    def __missing__(self, key: Hashable) -> int:
        group = stable_key_hash(key) % self._max_parallelism
        if len(self) >= self._limit:
            self.clear()
        self[key] = group
        return group


class KeyGroupAssigner:
    """Assigns keys to key groups with a bounded per-process cache (the per-record hot path).

    ``assign(key)`` validates and wraps errors; ``lookup`` is the cache's bound ``__getitem__``: a
    cache hit is one C-level dict lookup, but an unhashable key raises a bare ``TypeError`` (the
    caller may turn it into a PipelineError with ``unsupported_key_message``).
    """

    __slots__ = ("_cache", "lookup", "max_parallelism")

    def __init__(self, max_parallelism: int, *, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        validate_max_parallelism(max_parallelism)
        self.max_parallelism = max_parallelism
        self._cache = _KeyGroupCache(max_parallelism, max(1, cache_size))
        self.lookup: Callable[[Any], int] = self._cache.__getitem__

    def assign(self, key: Any) -> int:
        """The key group of ``key``; raises PipelineError for unsupported key types."""
        try:
            return self._cache[key]
        except TypeError:
            raise PipelineError(unsupported_key_message(key)) from None

    def cache_len(self) -> int:
        """How many keys are cached right now (for tests and metrics)."""
        return len(self._cache)


__all__ = [
    "DEFAULT_CACHE_SIZE",
    "MAX_MAX_PARALLELISM",
    "KeyGroupAssigner",
    "canonical_key",
    "key_group_for",
    "key_group_range",
    "operator_index_for",
    "ranges_overlap",
    "stable_key_hash",
    "unsupported_key_message",
    "validate_max_parallelism",
    "validate_parallelism",
]
