"""A keyed running sum with exactly-once output: the integration tests' main job.

Args are ``name=value`` strings (``streamjob run keyed_sum.py out=file:///... count=3000``):

- ``out`` (required unless ``kafka``): FileSink URI; ``kafka``, ``topic``: an exactly-once KafkaSink
  to that broker and topic instead (records as JSON arrays); ``count``, ``keys``, ``rate``: the generated events
- ``interval``: checkpoint interval in ms; ``unaligned=1``; ``aligned_timeout``: ms
- ``rocksdb=1``, ``incremental=1``: the state backend (``incremental=1`` alone: incremental hashmap);
  ``slow_us``: per-record delay after the reduce; ``slow_phase_ms``: only every other phase of that
  many ms of wall time is slow (a sink whose speed changes)
- ``buffer``: records per batch (``set_buffer_size``)
- ``sums_uid``: uid of the reduce (a different uid makes a restore fail); ``no_restart=1``;
  ``restarts``: at most that many restarts, 100 ms apart
- ``max_parallelism``: key groups; ``retained``: checkpoints kept; ``cleanup=delete``: DELETE_ON_CANCELLATION
- ``group``: the reduce and the sink in this slot sharing group (other slot processes than the source's)
- ``from_savepoint``: the job's code names the snapshot to start from, in the seed's order
  (``env.execute_from_savepoint(path)`` before the pipeline is built)

Each event ``i`` is ``(key, 1, amount)``; the reduce emits ``(key, count, total)`` per event, so in
an exactly-once run every key's counts are 1..n exactly once and the row with count n has the exact
total (``check_exactly_once``).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from streamjob.worker.api import (
    EmbeddedRocksDBStateBackend,
    ExternalizedCheckpointCleanup,
    HashMapStateBackend,
    RestartStrategies,
    StreamExecutionEnvironment,
)
from streamjob.worker.api.file_sink import FileSink

DEFAULTS = {"count": "3000", "keys": "20", "rate": "1500", "interval": "200"}


def options(args: list[str]) -> dict[str, str]:
    opts = dict(DEFAULTS)
    for arg in args:
        name, _, value = arg.partition("=")
        opts[name] = value
    return opts


def make_event(keys: int):  # type: ignore[no-untyped-def]
    def event(i: int) -> tuple[str, int, int]:
        return (f"k{i % keys}", 1, (i * 7919) % 1000)

    return event


def add(a: tuple[str, int, int], b: tuple[str, int, int]) -> tuple[str, int, int]:
    return (a[0], a[1] + b[1], a[2] + b[2])


class Slow:
    def __init__(self, delay_us: int, phase_ms: int = 0) -> None:
        self.delay_s = delay_us / 1e6
        self.phase_s = phase_ms / 1e3

    def __call__(self, value: Any) -> Any:
        if not self.phase_s or int(time.monotonic() / self.phase_s) % 2:
            time.sleep(self.delay_s)
        return value


def key_of(event: tuple[str, int, int]) -> str:
    return event[0]


def build(args: list[str]) -> StreamExecutionEnvironment:
    opts = options(args)
    env = StreamExecutionEnvironment.get_execution_environment()
    if "from_savepoint" in opts:
        env.execute_from_savepoint(opts["from_savepoint"])
    env.set_parallelism(2)
    if "max_parallelism" in opts:
        env.set_max_parallelism(int(opts["max_parallelism"]))
    env.enable_checkpointing(int(opts["interval"]))
    if "buffer" in opts:
        env.set_buffer_size(int(opts["buffer"]))
    config = env.get_checkpoint_config()
    if opts.get("unaligned") == "1":
        config.enable_unaligned_checkpoints()
    if "aligned_timeout" in opts:
        config.set_aligned_checkpoint_timeout(int(opts["aligned_timeout"]))
    if opts.get("rocksdb") == "1":
        env.set_state_backend(EmbeddedRocksDBStateBackend(incremental=opts.get("incremental") == "1"))
    elif opts.get("incremental") == "1":
        env.set_state_backend(HashMapStateBackend(incremental=True))
    if "retained" in opts:
        config.set_num_retained_checkpoints(int(opts["retained"]))
    if opts.get("cleanup") == "delete":
        config.set_externalized_checkpoint_cleanup(ExternalizedCheckpointCleanup.DELETE_ON_CANCELLATION)
    if opts.get("no_restart") == "1":
        env.set_restart_strategy(RestartStrategies.no_restart())
    if "restarts" in opts:
        env.set_restart_strategy(RestartStrategies.fixed_delay_restart(int(opts["restarts"]), 100))
    count = int(opts["count"])
    rate = float(opts["rate"]) if opts["rate"] != "0" else None
    stream = env.from_generator(make_event(int(opts["keys"])), count, rate).uid("events")
    sums = stream.key_by(key_of).reduce(add).uid(opts.get("sums_uid", "sums"))
    if "group" in opts:
        sums.slot_sharing_group(opts["group"])
    if "slow_us" in opts:
        sums = sums.map(Slow(int(opts["slow_us"]), int(opts.get("slow_phase_ms", "0")))).uid("slow")
    if "kafka" in opts:
        from streamjob.worker.connectors.kafka import KafkaSink

        sums.add_sink(KafkaSink(opts["topic"], opts["kafka"], "exactly-once")).uid("sink")
    else:
        sums.add_sink(FileSink(opts["out"])).uid("sink")
    return env


def expected(events: Iterable[int], keys: int) -> dict[str, tuple[int, int]]:
    """Per key: (number of events, final total) of the given event indices."""
    event = make_event(keys)
    result: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for i in events:
        key, n, amount = event(i)
        result[key][0] += n
        result[key][1] += amount
    return {k: (v[0], v[1]) for k, v in result.items()}


def check_exactly_once(rows: list[Any], events: Iterable[int] | int, keys: int = 20) -> str | None:
    """None when ``rows`` are exactly the outputs of a failure-free run over ``events`` (or range(events))."""
    want = expected(range(events) if isinstance(events, int) else events, keys)
    counts: dict[str, list[int]] = defaultdict(list)
    finals: dict[str, int] = {}
    for key, n, total in rows:
        counts[key].append(n)
        if n == want.get(key, (0, 0))[0]:
            finals[key] = total
    problems = []
    for key, (n, total) in sorted(want.items()):
        seen = Counter(counts.get(key, []))
        missing = [c for c in range(1, n + 1) if c not in seen]
        dupes = sorted(c for c, times in seen.items() if times > 1)
        extra = sorted(c for c in seen if not 1 <= c <= n)
        if missing or dupes or extra:
            problems.append(
                f"{key}: missing counts {missing[:5]} ({len(missing)}), duplicated {dupes[:5]} "
                f"({len(dupes)}), unexpected {extra[:5]}"
            )
        elif finals.get(key) != total:
            problems.append(f"{key}: final total {finals.get(key)} != {total}")
    unknown = sorted(set(counts) - set(want))
    if unknown:
        problems.append(f"unexpected keys {unknown[:5]}")
    return "; ".join(problems[:6]) or None


def check_at_least_once(rows: list[Any], events: Iterable[int] | int, keys: int = 20) -> str | None:
    """None when every key's counts 1..n are all present (duplicates allowed)."""
    want = expected(range(events) if isinstance(events, int) else events, keys)
    counts: dict[str, set[int]] = defaultdict(set)
    for key, n, _ in rows:
        counts[key].add(n)
    problems = [
        f"{key}: counts {sorted(set(range(1, n + 1)) - counts[key])[:5]} missing"
        for key, (n, _) in sorted(want.items())
        if not set(range(1, n + 1)) <= counts[key]
    ]
    return "; ".join(problems[:6]) or None


def consumed(remaining_splits: Iterable[Iterable[Iterable[int]]], count: int) -> list[int]:
    """Event indices a generator source of ``count`` events emitted, from its subtasks' remaining splits."""
    left: set[int] = set()
    for splits in remaining_splits:
        for start, end in splits:
            left.update(range(start, end))
    return [i for i in range(count) if i not in left]
