"""Builds the keyed backend a job asked for (``hashmap`` or ``rocksdb``) for one keyed subtask.

Called by the runtime's keyed operators at task start. Apart from the contract in ``backend``, so
that the implementations, which import the contract, are not imported back by it; the RocksDB one
(and rocksdict) is imported only when asked for.
"""

from __future__ import annotations

from streamjob.worker.errors import ConfigError
from streamjob.worker.state.backend import BackendKind, KeyedBackendContext, KeyedStateBackend


def create_keyed_backend(kind: BackendKind | str, ctx: KeyedBackendContext) -> KeyedStateBackend:
    """A new, empty keyed backend of ``kind`` ("hashmap" or "rocksdb") for ``ctx``."""
    ctx.validate()
    if kind == "hashmap":
        from streamjob.worker.state.hashmap import HashMapKeyedStateBackend

        return HashMapKeyedStateBackend(ctx)
    if kind == "rocksdb":
        from streamjob.worker.state.rocksdb import RocksDBKeyedStateBackend

        return RocksDBKeyedStateBackend(ctx)
    raise ConfigError(f"unknown state backend {kind!r}: use 'hashmap' or 'rocksdb'")
