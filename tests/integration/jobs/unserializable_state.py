"""A job that keeps a value no state serializer of it can store: it must fail once, with the fix.

Each key's ValueState ``ratio`` is set to a ``fractions.Fraction`` (a class of the standard library:
not one of the job's classes, and not field-encodable since it has ``__slots__``), so the job's
default SafeSerializer refuses it — at the first write on RocksDB, at the first checkpoint on
hashmap. The job restarts without limit otherwise (Flink's default with checkpointing on), so a
retried failure would show as a loop.

Args (``name=value``): ``out`` (FileSink URI), ``rocksdb=1``, ``incremental=1`` (hashmap with
incremental checkpoints: the value is refused while encoding a changed chunk, in the background).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from streamjob.worker.api import (
    EmbeddedRocksDBStateBackend,
    HashMapStateBackend,
    KeyedProcessFunction,
    StreamExecutionEnvironment,
    ValueStateDescriptor,
)
from streamjob.worker.api.file_sink import FileSink


class KeepRatio(KeyedProcessFunction[str, int, int]):
    def open(self, runtime_context: Any) -> None:
        self.ratio = runtime_context.get_state(ValueStateDescriptor("ratio"))

    def process_element(self, value: int, ctx: Any, out: Any) -> None:
        self.ratio.update(Fraction(value, 3))
        out.collect(value)


def build(args: list[str]) -> StreamExecutionEnvironment:
    opts = dict(arg.partition("=")[::2] for arg in args)
    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(200)
    if opts.get("rocksdb") == "1":
        env.set_state_backend(EmbeddedRocksDBStateBackend())
    elif opts.get("incremental") == "1":
        env.set_state_backend(HashMapStateBackend(incremental=True))
    stream = env.from_generator(lambda i: i, 100_000, 200.0).uid("numbers")
    stream.key_by(lambda i: str(i % 4)).process(KeepRatio()).uid("ratios").add_sink(FileSink(opts["out"])).uid("sink")
    return env
