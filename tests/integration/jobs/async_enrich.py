"""An async I/O job with keyed state and an exactly-once file sink, and the output a failure-free run gives.

Event ``i`` is ``f"k{i % keys}"``; a keyed ``reduce`` counts each key's events (keyed state on
hashmap or RocksDB) and emits ``(key, n)`` for its n-th event; the async function answers each
``(key, n)`` after 0-29 ms with ``[key, n, (n * 7919) % 1000]``, up to 20 requests in flight, so
every checkpoint (every 200 ms) holds requests in flight. The multiset of outputs does not depend
on the order of the requests: ``expected`` is every key's 1..n_k.

Args (``name=value``): ``out`` (FileSink URI), ``count``, ``keys``, ``rate``, ``rocksdb=1``,
``ordered=1`` (``ordered_wait`` instead of ``unordered_wait``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from streamjob.worker.api import (
    AsyncDataStream,
    AsyncFunction,
    EmbeddedRocksDBStateBackend,
    StreamExecutionEnvironment,
)
from streamjob.worker.api.file_sink import FileSink


def answer(n: int) -> int:
    return (n * 7919) % 1000


class Enrich(AsyncFunction[tuple[str, int], list[Any]]):
    async def async_invoke(self, value: tuple[str, int]) -> list[list[Any]]:
        key, n = value
        await asyncio.sleep(((n * 37) % 30) / 1000)
        return [[key, n, answer(n)]]


def build(args: list[str]) -> StreamExecutionEnvironment:
    opts = dict(arg.partition("=")[::2] for arg in args)
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    env.enable_checkpointing(200)
    if opts.get("rocksdb") == "1":
        env.set_state_backend(EmbeddedRocksDBStateBackend())
    keys = int(opts.get("keys", "10"))
    events = env.from_generator(
        lambda i: f"k{i % keys}", int(opts.get("count", "3000")), float(opts.get("rate", "500"))
    )
    counts = events.uid("events").map(lambda k: (k, 1)).key_by(lambda e: e[0]).sum(1).uid("counts")
    wait = AsyncDataStream.ordered_wait if opts.get("ordered") == "1" else AsyncDataStream.unordered_wait
    wait(counts, Enrich(), 5_000, 20).uid("enrich").add_sink(FileSink(opts["out"])).uid("sink")
    return env


def expected(count: int, keys: int) -> list[list[Any]]:
    """Every output of a failure-free run, sorted."""
    per_key = [count // keys + (1 if k < count % keys else 0) for k in range(keys)]
    return sorted([f"k{k}", n, answer(n)] for k in range(keys) for n in range(1, per_key[k] + 1))
