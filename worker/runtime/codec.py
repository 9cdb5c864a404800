"""The record batches' wire encoding: restricted pickle (every other message is ``protocol.messages``).

Record batches travel only between the slots of one job, but a data port is still a network
port: batches are decoded by an unpickler that refuses every global except an allow-list
(built-in value types plus the types the job registered or defined in its own modules), so a
peer can never make a worker import or call arbitrary code. Nothing here touches storage.
"""

from __future__ import annotations

import datetime
import decimal
import io
import pickle
import uuid
from collections.abc import Iterable
from typing import Any

from streamjob.worker.errors import SerializationError

_SAFE_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "bytearray"), ("builtins", "complex"),
    ("builtins", "slice"), ("builtins", "range"),
    ("datetime", "datetime"), ("datetime", "date"), ("datetime", "time"), ("datetime", "timedelta"),
    ("datetime", "timezone"), ("decimal", "Decimal"), ("uuid", "UUID"), ("collections", "OrderedDict"),
    ("collections", "deque"), ("copyreg", "_reconstructor"), ("builtins", "object"),
    ("copyreg", "__newobj__"),
})
_ = (datetime, decimal, uuid)


class RecordCodec:
    """Encodes lists of records; decoding admits only allow-listed classes."""

    def __init__(self, allowed_types: Iterable[type] = (), allowed_modules: Iterable[str] = ()) -> None:
        self._allowed = set(_SAFE_GLOBALS)
        for cls in allowed_types:
            self._allowed.add((cls.__module__, cls.__qualname__))
        self._modules = tuple(m for m in allowed_modules if m)

    def allows(self, module: str, name: str) -> bool:
        """Whether a pickled global may be resolved."""
        if (module, name) in self._allowed:
            return True
        return any(module == m or module.startswith(m + ".") for m in self._modules)

    def encode(self, records: list[Any]) -> bytes:
        """A batch as bytes."""
        try:
            return pickle.dumps(records, protocol=5)
        except (pickle.PicklingError, TypeError, AttributeError) as err:
            raise SerializationError(
                f"a record cannot be sent between workers ({err}); records must be plain values "
                "(int, str, float, tuple, list, dict, ...) or classes defined at module level in the job's code"
            ) from err

    def decode(self, data: bytes | memoryview) -> list[Any]:
        """A batch from bytes; refuses globals outside the allow-list."""
        return _RestrictedUnpickler(io.BytesIO(data), self).load()  # type: ignore[no-any-return]


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, stream: io.BytesIO, codec: RecordCodec) -> None:
        super().__init__(stream)
        self._codec = codec

    def find_class(self, module: str, name: str) -> Any:
        if not self._codec.allows(module, name):
            raise SerializationError(
                f"refusing to decode {module}.{name} in a record batch: only built-in values and the job's "
                "own types may cross the network (env.register_type(cls) allows another class)"
            )
        found = super().find_class(module, name)
        if (module, name) not in _SAFE_GLOBALS and not isinstance(found, type):
            raise SerializationError(f"refusing to decode {module}.{name}: only classes may be named in records")
        return found
