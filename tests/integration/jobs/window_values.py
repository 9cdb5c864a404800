"""Window contents of a type ``SafeSerializer`` cannot store, with and without the job-wide pickle setting.

Records are ``fractions.Fraction`` (``__slots__``: not field-encodable), keyed by ``numerator % 3``
into 300 ms processing-time windows; each window emits ``"<key> <count> <sum>"``. With ``pickle=1``
the job sets ``env.set_internal_state_serializer(PickleSerializer())`` and checkpoints its windows;
without, the first checkpoint (hashmap) or the first buffered record (RocksDB) fails the job once.
Parallelism 1: records stay in one process (a Fraction record crossing processes would need
``env.register_type``). Args (``name=value``): ``pickle=1``, ``rocksdb=1``.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from streamjob.worker.api import (
    EmbeddedRocksDBStateBackend,
    PickleSerializer,
    ProcessWindowFunction,
    StreamExecutionEnvironment,
    Time,
    TumblingProcessingTimeWindows,
)


class SumWindow(ProcessWindowFunction[Fraction, str, int]):
    def process(self, key: int, context: Any, elements: Any, out: Any) -> None:
        items = list(elements)
        assert all(type(e) is Fraction for e in items)
        out.collect(f"{key} {len(items)} {sum(items)}")


def build(args: list[str]) -> StreamExecutionEnvironment:
    opts = dict(arg.partition("=")[::2] for arg in args)
    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(200)
    if opts.get("pickle") == "1":
        env.set_internal_state_serializer(PickleSerializer())
    if opts.get("rocksdb") == "1":
        env.set_state_backend(EmbeddedRocksDBStateBackend())
    stream = env.from_generator(lambda i: Fraction(i, 7), 1_000_000, 500.0).uid("fractions")
    stream.key_by(lambda f: f.numerator % 3).window(TumblingProcessingTimeWindows.of(Time.milliseconds(300))).process(
        SumWindow()
    ).uid("windows").print()
    return env
