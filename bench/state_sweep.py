"""Large state: checkpoint duration, full and incremental size, restore time and memory vs state size.

Run: ``.venv/bin/python -m bench.state_sweep`` (sizes 10k, 100k, 1M, 10M keys on hashmap and RocksDB,
full and incremental; ``--sizes 10000,100000`` for a quick run). Each configuration runs in its own
process, so that its peak memory (``ru_maxrss``) is its own. A process fills ``N`` keys of a
``ValueState[(sum, count)]`` (keys ``'k%d'``), takes a first checkpoint, then ``--intervals`` more,
each after changing ``--change`` (1 %) of the keys at random; every checkpoint is written through
the real ``file://`` checkpoint storage (a temporary directory) and confirmed, as the coordinator
does. Then a fresh backend restores the last checkpoint and decodes it.

Reported per configuration: checkpoint duration (p50 and max of the intervals, wall clock: the
synchronous copy, the preparation steps and the write, with no records processed meanwhile),
full size (every file the checkpoint references) and incremental size (bytes it wrote: the rule of
``checkpoint/finalize.written_size``), restore time, resident memory after the fill and the
process's peak. The machine's load average is recorded with the figures (other work on a shared
machine slows every figure). Results: ``bench/results/state-sweep.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from streamjob.worker.snapshot.handles import StateHandle
from streamjob.worker.state import KeyedBackendContext, ValueStateDescriptor, create_keyed_backend, key_group_range
from streamjob.worker.storage import CheckpointStorage

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_SIZES = (10_000, 100_000, 1_000_000, 10_000_000)
CONFIGS = (("hashmap", False), ("hashmap", True), ("rocksdb", False), ("rocksdb", True))
UID = "sums"
MAX_PARALLELISM = 128


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _backend(kind: str, incremental: bool, root: Path) -> Any:
    ctx = KeyedBackendContext(
        operator_uid=UID,
        subtask_index=0,
        parallelism=1,
        max_parallelism=MAX_PARALLELISM,
        key_group_range=key_group_range(MAX_PARALLELISM, 1, 0),
        local_dir=root,
        incremental=incremental,
    )
    return create_keyed_backend(kind, ctx)


def _checkpoint(backend: Any, storage: CheckpointStorage, checkpoint_id: int) -> tuple[float, list[StateHandle]]:
    """One checkpoint as a task takes it (copy, prepare, write), confirmed; its wall time and handles."""
    started = time.perf_counter()
    runner = backend.snapshot()
    while not runner.prepare(0.005):
        pass
    handles: list[StateHandle] = runner(storage.writer(checkpoint_id, UID, 0))
    elapsed = time.perf_counter() - started
    backend.notify_checkpoint_complete(checkpoint_id)
    return elapsed, handles


def measure(kind: str, incremental: bool, keys: int, intervals: int, change: float, seed: int = 7) -> dict[str, Any]:
    """One configuration, in this process (``--one``)."""
    rng = random.Random(seed)
    descriptor = ValueStateDescriptor("acc", tuple)
    with tempfile.TemporaryDirectory(prefix="state-sweep-") as tmp:
        root = Path(tmp)
        storage = CheckpointStorage.open(
            (root / "checkpoints").as_uri(), None, namespace="bench", name="sweep", job_id="sweep"
        )
        backend = _backend(kind, incremental, root / "live")
        get, put = backend.get_value_accessors(descriptor)
        started = time.perf_counter()
        for i in range(keys):
            put(f"k{i}", (i, 1))
        fill_s = time.perf_counter() - started
        rss_filled = _rss_bytes()
        first_s, handles = _checkpoint(backend, storage, 1)
        durations: list[float] = []
        written: list[int] = []
        full = sum(h.size for h in handles)
        changed = max(1, int(keys * change))
        for checkpoint_id in range(2, intervals + 2):
            for i in rng.sample(range(keys), changed):
                key = f"k{i}"
                total, count = get(key)
                put(key, (total + i, count + 1))
            before = {h.path for h in handles if h.shared}
            elapsed, handles = _checkpoint(backend, storage, checkpoint_id)
            durations.append(elapsed)
            full = sum(h.size for h in handles)
            written.append(sum(h.size for h in handles if not h.shared or h.path not in before))
        backend.close()
        target = _backend(kind, False, root / "restored")
        started = time.perf_counter()
        target.restore(handles, storage.reader(storage.checkpoint_base_uri))
        get_restored, _ = target.get_value_accessors(descriptor)
        restore_s = time.perf_counter() - started
        probe = rng.randrange(keys)
        assert get_restored(f"k{probe}") is not None, "the restored state lacks a key"
        target.close()
    return {
        "backend": kind,
        "incremental": incremental,
        "keys": keys,
        "changed_per_interval": changed,
        "fill_s": round(fill_s, 3),
        "first_checkpoint_s": round(first_s, 3),
        "checkpoint_p50_s": round(statistics.median(durations), 3),
        "checkpoint_max_s": round(max(durations), 3),
        "full_size_bytes": full,
        "incremental_size_bytes_p50": int(statistics.median(written)),
        "restore_s": round(restore_s, 3),
        "rss_after_fill_mib": round(rss_filled / 2**20, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _run_one(kind: str, incremental: bool, keys: int, intervals: int, change: float, timeout: float) -> dict[str, Any]:
    spec = f"{kind}:{int(incremental)}:{keys}"
    command = [sys.executable, "-m", "bench.state_sweep", "--one", spec, "--intervals", str(intervals)]
    command += ["--change", str(change)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"backend": kind, "incremental": incremental, "keys": keys, "error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"backend": kind, "incremental": incremental, "keys": keys, "error": tail}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f}"


def render(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The markdown table of a sweep."""
    lines = [
        "# State size sweep (`python -m bench.state_sweep`)",
        "",
        f"Run {meta['date']} on {meta['cpus']} CPUs; load average {meta['load_before']} before, "
        f"{meta['load_after']} after (a shared machine slows every figure). {meta['intervals']} checkpoints "
        f"after the first, each after changing {meta['change'] * 100:g} % of the keys at random; "
        "durations are wall clock with no records processed meanwhile, through file:// storage.",
        "",
        "| backend | incremental | keys | checkpoint p50 s | max s | first s | full MiB | written p50 MiB "
        "| restore s | RSS after fill MiB | peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['backend']} | {r['incremental']} | {r['keys']:,} | {r['error']} |||||||")
            continue
        lines.append(
            f"| {r['backend']} | {r['incremental']} | {r['keys']:,} | {r['checkpoint_p50_s']} | "
            f"{r['checkpoint_max_s']} | {r['first_checkpoint_s']} | {_mib(r['full_size_bytes'])} | "
            f"{_mib(r['incremental_size_bytes_p50'])} | {r['restore_s']} | {r['rss_after_fill_mib']} | "
            f"{r['peak_rss_mib']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.state_sweep", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="key counts, comma-separated")
    parser.add_argument("--backends", default="hashmap,rocksdb", help="hashmap and/or rocksdb")
    parser.add_argument("--modes", default="full,incremental", help="full and/or incremental checkpoints")
    parser.add_argument("--intervals", type=int, default=5, help="checkpoints after the first")
    parser.add_argument("--change", type=float, default=0.01, help="share of the keys changed per interval")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per configuration")
    parser.add_argument("--out", default=str(RESULTS / "state-sweep"), help="results path without suffix")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        kind, inc, keys = args.one.split(":")
        print(json.dumps(measure(kind, inc == "1", int(keys), args.intervals, args.change)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s]
    backends = set(args.backends.split(","))
    modes = {mode == "incremental" for mode in args.modes.split(",")}
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "intervals": args.intervals,
        "change": args.change,
    }
    results = []
    for keys in sizes:
        for kind, incremental in CONFIGS:
            if kind in backends and incremental in modes:
                result = _run_one(kind, incremental, keys, args.intervals, args.change, args.timeout)
                print(json.dumps(result), flush=True)
                results.append(result)
    meta["load_after"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    out.with_suffix(".md").write_text(render(results, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
