"""INTERNAL: a RocksDB map state's rows handed to an operator that does its own key handling.

The window operator's RocksDB fast path (``runtime/rocks_windows.py``) reads and writes the rows
of the ``__windows__`` map state with prebuilt bytes: a key's row prefix (key group, state id,
length-prefixed key: the layout of ``rocksdb_states.py``) is built once per key, a user key's
bytes once per window, and a batch's reads and writes go to the database in one multi-get and one
write batch. The rows are the map state's own, so checkpoints, restores and rescaling are
unchanged. The caller keeps the map state's rules: every key written is passed to ``mark``.

Callers: ``RocksDBKeyedStateBackend.direct_rows``; the window operator's RocksDB fast path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:  # rocksdict is loaded by the RocksDB backend only (a slot of a hashmap job never imports it)
    from rocksdict import Rdict

from streamjob.worker.state.key_groups import canonical_key

_PREFIX_CACHE_LIMIT = 1 << 16


class DirectRows:
    """One map state's rows in a RocksDB (see the module docstring)."""

    __slots__ = ("_entry", "_prefixes", "_sid", "db", "decode", "encode", "mark")

    def __init__(
        self,
        db: Rdict,
        sid: bytes,
        entry_of: Callable[[Any], tuple[bytes, bytes, Any]],
        encode: Callable[[Any], bytes],
        decode: Callable[[bytes], Any],
        mark: Callable[[Any], None] | None,
    ) -> None:
        self.db = db
        self.encode = encode
        self.decode = decode
        self.mark = mark
        self._sid = sid
        self._entry = entry_of
        self._prefixes: dict[Any, bytes] = {}

    def prefix(self, key: Any) -> bytes:
        """The row prefix of ``key`` (refuses a key of another subtask's key groups, as the states do)."""
        prefixes = self._prefixes
        found = prefixes.get(key)
        if found is None:
            group, key_bytes, _ = self._entry(key)
            found = group + self._sid + key_bytes
            if len(prefixes) >= _PREFIX_CACHE_LIMIT:
                prefixes.clear()
            prefixes[key] = found
        return found

    def get_many(self, rows: list[bytes]) -> list[bytes | None]:
        """The stored bytes of ``rows`` (None: absent), in one multi-get."""
        return cast(list[bytes | None], self.db.get(cast(Any, rows)))

    def user_key(self, user_key: Any) -> bytes:
        """The bytes a user key of this map state is stored under."""
        return self.encode(canonical_key(user_key))


__all__ = ["DirectRows"]
