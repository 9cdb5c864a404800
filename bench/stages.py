"""Per-record cost of each stage of the keyed-sum pipeline, measured in-process with the runtime's classes.

Where the time of one record goes between the source and the sink, without processes, sockets or
the event loop: the generator source, the key-by partitioner, batch encoding and decoding for the
network, the local channel hand-over, the reduce operator with ``sum(1)``, and the synchronous and
asynchronous parts of a snapshot of 10,000 keys. A plain dict loop doing the same sum is the
reference for "Python itself". Each figure is the best of several repetitions of the CPU time
(least disturbed by other load); snapshot figures are wall time (they include file I/O).
Used by ``bench.__main__`` as the ``stages`` scenario.

Any stage that fails (the runtime's internals move) is reported with its error; the others still run.
"""

from __future__ import annotations

import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

DESCRIPTION = (
    "in-process ns/record of each pipeline stage (source, partitioner, codec, channel, reduce, "
    "the user-function chain, snapshot)"
)
KEYS = 10_000
BATCH = 1000


def _event(i: int) -> tuple[int, int]:
    return (i % KEYS, 1)


def _best(fn: Callable[[], int], repeat: int) -> float:
    """Best CPU ns per record of ``fn`` (which returns the records it handled).

    CPU time, not wall time: on a shared machine a preempted run would otherwise count the time
    other processes ran.
    """
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time_ns()
        count = fn()
        best = min(best, (time.process_time_ns() - started) / max(1, count))
    return best


def _batches(records: int) -> list[list[tuple[int, int]]]:
    return [[_event(i) for i in range(a, min(records, a + BATCH))] for a in range(0, records, BATCH)]


def _drive(coro: Any) -> None:
    """Runs a coroutine that never suspends (no credit waits) without an event loop."""
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    raise RuntimeError("the coroutine suspended (it waited for credit)")


def _pipeline(reduce_fn: Any = None) -> tuple[Any, Any]:
    """The keyed-sum transformations built with the public API: (key-by edge, reduce transformation)."""
    from streamjob.worker.api import StreamExecutionEnvironment

    env = StreamExecutionEnvironment.get_execution_environment()
    keyed = env.from_generator(_event, count=1).key_by(lambda e: e[0])
    stream = keyed.sum(1) if reduce_fn is None else keyed.reduce(reduce_fn)
    return keyed, stream.transformation


def _reduce_operator(transformation: Any, local_dir: Path) -> Any:
    from streamjob.worker.runtime.context import TaskInfo
    from streamjob.worker.runtime.operators import OperatorSetup, create_operator

    info = TaskInfo("bench", "bench", "Reduce (1/1)", "sums", 0, 1, 128, 0)
    transformation.uid = "sums"
    op = create_operator(OperatorSetup(info, transformation, (0, 127), "hashmap", False, local_dir, None))
    op.open()
    return op


class _NullChannel:
    """An output channel with unlimited credit that drops batches (isolates the partitioner)."""

    def __init__(self) -> None:
        self.records = 0

    async def send_batch(self, batch: list[Any]) -> None:
        self.records += len(batch)

    def send_event(self, event: Any) -> None:
        return None


def _stage_source(records: int, repeat: int) -> float:
    from streamjob.worker.api.sources import DataGeneratorSource, SourceReaderContext

    def run() -> int:
        reader = DataGeneratorSource(_event, records, None).create_reader(SourceReaderContext(0, 1, 0), None)
        n = 0
        while (batch := reader.poll(BATCH)) is not None:
            n += len(batch)
        return n

    return _best(run, repeat)


def _stage_partition(records: int, repeat: int, targets: int) -> float:
    from streamjob.worker.graph.transformations import Partitioning
    from streamjob.worker.runtime.channels import RecordWriter

    keyed, _ = _pipeline()
    batches = _batches(records)
    channels = [_NullChannel() for _ in range(targets)]
    writer = RecordWriter(channels, Partitioning.HASH, keyed.key_selector, 128, 0)  # type: ignore[arg-type]

    def run() -> int:
        for batch in batches:
            _drive(writer.emit(batch))
        return records

    return _best(run, repeat)


def _stage_codec(records: int, repeat: int) -> tuple[float, float, int]:
    from streamjob.worker.runtime.codec import RecordCodec

    codec = RecordCodec()
    half = [b[: BATCH // 2] for b in _batches(records)]
    encoded = [codec.encode(b) for b in half]
    n = sum(len(b) for b in half)

    def enc() -> int:
        for b in half:
            codec.encode(b)
        return n

    def dec() -> int:
        for data in encoded:
            codec.decode(data)
        return n

    return _best(enc, repeat), _best(dec, repeat), len(encoded[0])


def _stage_channel(records: int, repeat: int) -> float:
    from streamjob.worker.runtime.channels import InputGate, LocalOutputChannel

    batches = _batches(records)

    async def run_async() -> int:
        gate = InputGate()
        out = LocalOutputChannel(gate.add_channel((0, 0, 0)))
        n = 0
        for batch in batches:
            await out.send_batch(batch)
            found = gate.poll()
            assert found is not None
            n += len(found[1])
        return n

    def run() -> int:
        coro = run_async()
        try:
            coro.send(None)
        except StopIteration as done:
            return int(done.value)
        raise RuntimeError("the channel waited for credit")

    return _best(run, repeat)


def _stage_reduce(records: int, repeat: int, reduce_fn: Any, local_dir: Path) -> tuple[float, Any]:
    _, transformation = _pipeline(reduce_fn)
    op = _reduce_operator(transformation, local_dir)
    batches = _batches(records)

    def run() -> int:
        for batch in batches:
            op.process_batch(batch)
        return records

    return _best(run, repeat), op


def _stage_snapshot(op: Any, repeat: int, work: Path) -> tuple[float, float, int]:
    """Sync and async (file write) milliseconds of one snapshot of the reduce operator's 10,000 keys."""
    from streamjob.worker.storage.checkpoint_storage import CheckpointStorage

    storage = CheckpointStorage.open(
        (work / "checkpoints").as_uri(), None, namespace="bench", name="stages", job_id="stages"
    )
    best_sync, best_write, size = float("inf"), float("inf"), 0
    for attempt in range(repeat):
        cid = attempt + 1
        started = time.perf_counter()
        write = op.snapshot(cid, int(time.time() * 1000))
        synced = time.perf_counter()
        handles = write(storage.writer(cid, op.uid, 0))
        written = time.perf_counter()
        op.notify_complete(cid)
        best_sync = min(best_sync, (synced - started) * 1000)
        best_write = min(best_write, (written - synced) * 1000)
        size = sum(h.size for hs in handles.values() for h in hs)
    return best_sync, best_write, size


def _stage_userfn_chain(records: int, repeat: int, local_dir: Path) -> float:
    """The user-function job's operators (``bench/jobs/user_fn.py``): map, KeyedProcessFunction, sink.

    Batches of the job's events run through its own map, keyed process and counting sink in the
    slices a consumer uses (``SLICE_CACHE_RECORDS``), with the hashmap backend; no source, no exchange.
    """
    import sys

    from streamjob.worker.runtime.context import TaskInfo
    from streamjob.worker.runtime.operators import OperatorSetup, create_operator
    from streamjob.worker.runtime.task_setup import SLICE_CACHE_RECORDS

    jobs = str(Path(__file__).resolve().parent / "jobs")
    if jobs not in sys.path:
        sys.path.insert(0, jobs)
    import user_fn

    local_dir.mkdir(parents=True, exist_ok=True)  # the sink writes its report there when closed
    env = user_fn.build(["--records", "1", "--out", str(local_dir)])
    by_uid = {t.uid: t for t in env.transformations}
    ops = []
    for uid in ("parse", "totals", "counts"):
        info = TaskInfo("bench", "bench", uid, uid, 0, 1, 128, 0)
        op = create_operator(OperatorSetup(info, by_uid[uid], (0, 127), "hashmap", False, local_dir / uid, None))
        op.open()
        ops.append(op)
    parse, totals, counts = ops
    event = user_fn._event(KEYS)
    slices = [
        [event(i) for i in range(a, min(records, a + SLICE_CACHE_RECORDS))]
        for a in range(0, records, SLICE_CACHE_RECORDS)
    ]

    def run() -> int:
        for piece in slices:
            counts.process_batch(totals.process_batch(parse.process_batch(piece)))
        return records

    try:
        return _best(run, repeat)
    finally:
        for op in ops:
            op.close()


def _dict_loop(records: int, repeat: int) -> float:
    def run() -> int:
        sums: dict[int, int] = {}
        get = sums.get
        for i in range(records):
            key, value = _event(i)
            sums[key] = get(key, 0) + value
        return records

    return _best(run, repeat)


def run(quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """Measures every stage; returns ``{"stages": [...], "errors": [...]}``."""
    records = 100_000 if quick else 400_000
    repeat = 2 if quick else 9
    rows: list[dict[str, Any]] = []
    errors: list[str] = []

    def stage(name: str, what: str, measure: Callable[[], float | None]) -> None:
        try:
            ns = measure()
        except Exception as err:
            errors.append(f"{name}: {type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}")
            log(f"  {name}: FAILED: {type(err).__name__}: {err}")
            return
        if ns is not None:
            rows.append({"name": name, "what": what, "ns_per_record": round(ns, 1)})
            log(f"  {name}: {ns:,.0f} ns/record")

    with tempfile.TemporaryDirectory(prefix="streamjob-stages-") as tmp:
        work = Path(tmp)
        stage(
            "dict_loop",
            "reference: generate (i % 10000, 1) and sum per key in a plain dict",
            lambda: _dict_loop(records, repeat),
        )
        stage("source", "DataGeneratorSource.poll(1000) calling the generator", lambda: _stage_source(records, repeat))
        stage(
            "partition_p1",
            "RecordWriter.emit, one target (p=1: no hashing)",
            lambda: _stage_partition(records, repeat, 1),
        )
        stage(
            "partition_p2",
            "RecordWriter.emit, hash to 2 targets (key selector + key→target cache)",
            lambda: _stage_partition(records, repeat, 2),
        )
        codec: dict[str, Any] = {}

        def measure_codec(part: int) -> float:
            if not codec:
                codec["enc"], codec["dec"], codec["bytes"] = _stage_codec(records, repeat)
            return float(codec["enc" if part == 0 else "dec"])

        stage("encode", "RecordCodec.encode of 500-record batches (p=2 remote half)", lambda: measure_codec(0))
        stage("decode", "RecordCodec.decode (restricted unpickler) of the same batches", lambda: measure_codec(1))
        stage(
            "local_channel",
            "LocalOutputChannel.send_batch + InputGate.poll per batch of 1000",
            lambda: _stage_channel(records, repeat),
        )
        reduce_ops: dict[str, Any] = {}

        def measure_reduce(name: str, fn: Any) -> float:
            ns, op = _stage_reduce(records, repeat, fn, work / name)
            reduce_ops[name] = op
            return ns

        stage(
            "reduce_sum",
            "ReduceOperator.process_batch with .sum(1) (the runtime's path for sums)",
            lambda: measure_reduce("sum", None),
        )
        stage(
            "reduce_lambda",
            "ReduceOperator.process_batch with reduce(lambda a, b: (a[0], a[1] + b[1]))",
            lambda: measure_reduce("lambda", lambda a, b: (a[0], a[1] + b[1])),
        )
        stage(
            "userfn_chain",
            "the user-function job's map, KeyedProcessFunction (ValueState) and per-record sink, in-process",
            lambda: _stage_userfn_chain(records, repeat, work / "userfn"),
        )
        snap: dict[str, Any] = {}

        def measure_snapshot(part: int) -> float | None:
            if "sum" not in reduce_ops:
                return None
            if not snap:
                snap["sync"], snap["write"], snap["bytes"] = _stage_snapshot(reduce_ops["sum"], repeat, work)
            return float(snap["sync" if part == 0 else "write"]) * 1e6 / KEYS

        stage(
            "snapshot_sync",
            "synchronous part of a snapshot of 10,000 keys (per key; ms in 'snapshot')",
            lambda: measure_snapshot(0),
        )
        stage("snapshot_write", "asynchronous part: encode and write the files (per key)", lambda: measure_snapshot(1))
        for op in reduce_ops.values():
            op.close()
    return {
        "description": DESCRIPTION,
        "records": records,
        "repeat": repeat,
        "stages": rows,
        "errors": errors,
        "encoded_batch_bytes": codec.get("bytes"),
        "snapshot": {
            "sync_ms": snap.get("sync"),
            "write_ms": snap.get("write"),
            "bytes": snap.get("bytes"),
            "keys": KEYS,
        }
        if snap
        else None,
    }
