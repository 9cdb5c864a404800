"""Micro-benchmark of the record codec: the pickle path before the fix, the codec now, and msgpack.

``.venv/bin/python -m bench.codec`` (``--quick`` for a smoke run) measures, for typical batches,
the CPU ns per record of encoding and decoding a batch with

- **old**: the codec before the fix (``pickle.dumps`` protocol 5, and an unpickler whose
  ``find_class`` admitted any name under the job's module; reproduced here, it is gone from the runtime);
- **new**: ``RecordCodec`` as the runtime uses it (format byte; plain batches name no global,
  class batches resolve exact allowed classes; the class-change check after class batches);
- **msgpack**: the best msgpack encoding of the same records that keeps tuples tuples: the
  encoder must check every record's exact type first (msgpack writes a tuple, a list and a named
  tuple alike as an array), then ``packb``; decoding is ``unpackb(use_list=False)``. Only shapes it
  can carry (scalars and flat tuples of scalars) have a figure.

The three run interleaved, round after round, and the best round counts (CPU time, the least
disturbed by other load). Results go to ``bench/results/codec.json`` and ``codec.md``, with the
estimated effect on the keyed-sum job at p=2 (half of its records cross between processes), using
that job's CPU ns/event from ``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import pickle
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgpack

from streamjob.worker.runtime.codec import RecordCodec

RESULTS = Path(__file__).resolve().parent / "results"
_SCALARS = frozenset({str, int, float, bool, type(None), bytes})


@dataclass(frozen=True)
class Reading:
    sensor: str
    value: float
    ts: int


class _OldUnpickler(pickle.Unpickler):
    """The unpickler before the fix: any name under an allowed module prefix that resolves to a type."""

    modules = ("bench", "__main__")

    def find_class(self, module: str, name: str) -> Any:
        if not any(module == m or module.startswith(m + ".") for m in self.modules):
            raise pickle.UnpicklingError(f"refusing {module}.{name}")
        found = super().find_class(module, name)
        if not isinstance(found, type):
            raise pickle.UnpicklingError(f"refusing {module}.{name}")
        return found


def old_encode(records: list[Any]) -> bytes:
    return pickle.dumps(records, protocol=5)


def old_decode(data: bytes) -> Any:
    return _OldUnpickler(io.BytesIO(data)).load()


def msgpack_encode(records: list[Any]) -> bytes | None:
    """Plain scalars or flat tuples of scalars as msgpack; None for a shape it cannot carry exactly."""
    kinds = set(map(type, records))
    if kinds <= _SCALARS:
        return b"\x03" + msgpack.packb(records, use_bin_type=True)
    if kinds == {tuple} and _SCALARS.issuperset(map(type, itertools.chain.from_iterable(records))):
        return b"\x04" + msgpack.packb(records, use_bin_type=True)
    return None


def msgpack_decode(data: bytes) -> list[Any]:
    return list(msgpack.unpackb(memoryview(data)[1:], use_list=False, raw=False, strict_map_key=False))


SHAPES: dict[str, Callable[[int], Any]] = {
    "(int, int) keyed sum": lambda i: (i % 10_000, 1),
    "(str, int)": lambda i: (f"user-{i % 1000}", i),
    "(str, float, int)": lambda i: (f"sensor-{i % 500}", i * 0.25, 1_700_000_000_000 + i),
    "int": lambda i: i * 7,
    "dict {str: str|int}": lambda i: {"user": f"user-{i % 1000}", "n": i, "page": "/home"},
    "dataclass (job class)": lambda i: Reading(f"sensor-{i % 500}", i * 0.25, i),
}


def _cpu_ns(fn: Callable[[], None], loops: int) -> float:
    started = time.process_time_ns()
    for _ in range(loops):
        fn()
    return (time.process_time_ns() - started) / loops


def measure(batch_size: int, rounds: int, loops: int) -> list[dict[str, Any]]:
    codec = RecordCodec([Reading])
    rows: list[dict[str, Any]] = []
    for shape, make in SHAPES.items():
        records = [make(i) for i in range(batch_size)]
        encoded = {"old": old_encode(records), "new": codec.encode(records), "msgpack": msgpack_encode(records)}
        assert old_decode(encoded["old"]) == records and codec.decode(encoded["new"]) == records
        if encoded["msgpack"] is not None:
            assert msgpack_decode(encoded["msgpack"]) == records
        paths: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
            "old": (lambda r=records: old_encode(r), lambda d=encoded["old"]: old_decode(d)),
            "new": (lambda r=records: codec.encode(r), lambda d=encoded["new"]: codec.decode(d)),
        }
        if encoded["msgpack"] is not None:
            paths["msgpack"] = (lambda r=records: msgpack_encode(r), lambda d=encoded["msgpack"]: msgpack_decode(d))
        best: dict[str, list[float]] = {name: [float("inf"), float("inf")] for name in paths}
        for _ in range(rounds):
            for name, (enc, dec) in paths.items():
                best[name][0] = min(best[name][0], _cpu_ns(enc, loops) / batch_size)
                best[name][1] = min(best[name][1], _cpu_ns(dec, loops) / batch_size)
        row: dict[str, Any] = {"shape": shape, "batch": batch_size}
        for name, (enc_ns, dec_ns) in best.items():
            row[name] = {"encode_ns": round(enc_ns, 1), "decode_ns": round(dec_ns, 1),
                         "total_ns": round(enc_ns + dec_ns, 1), "bytes": len(encoded[name] or b"")}
        row["new_vs_old_pct"] = round(100 * (row["new"]["total_ns"] / row["old"]["total_ns"] - 1), 1)
        if "msgpack" in row:
            row["msgpack_vs_old_pct"] = round(100 * (row["msgpack"]["total_ns"] / row["old"]["total_ns"] - 1), 1)
        rows.append(row)
    return rows


def _keyed_sum_cpu_ns() -> float | None:
    """The keyed sum's CPU ns/event at p=2 (median) from the last full suite run, if there is one."""
    try:
        latest = json.loads((RESULTS / "latest.json").read_text())
        return float(latest["scenarios"]["p2"]["summary"]["cpu_ns_per_event"]["median"])
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Record codec micro-benchmark",
        "",
        f"Command: `{result['command']}` — {result['measured_at']} — code at {result['commit']}, "
        f"Python {result['python']}, best of {result['rounds']} interleaved rounds (CPU ns per record).",
        "",
        "| shape | batch | old enc | old dec | old total | new enc | new dec | new total | new vs old | "
        "msgpack enc | msgpack dec | msgpack total | msgpack vs old |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        m = row.get("msgpack")
        mp = (f"{m['encode_ns']} | {m['decode_ns']} | {m['total_ns']} | {row['msgpack_vs_old_pct']:+} %"
              if m else "– | – | – | –")
        lines.append(f"| {row['shape']} | {row['batch']} | {row['old']['encode_ns']} | {row['old']['decode_ns']} | "
                     f"{row['old']['total_ns']} | {row['new']['encode_ns']} | {row['new']['decode_ns']} | "
                     f"{row['new']['total_ns']} | {row['new_vs_old_pct']:+} % | {mp} |")
    lines.append("")
    effect = result.get("keyed_sum_effect")
    if effect:
        lines.append(f"Estimated effect on the keyed sum at p=2 ({effect['cpu_ns_per_event']:.0f} CPU ns/event in "
                     f"latest.json, half of the records cross between slots): new {effect['new_pct']:+.2f} % CPU "
                     f"per event, msgpack {effect['msgpack_pct']:+.2f} %.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.codec", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (figures not representative)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rounds, loops = (2, 3) if args.quick else (15, 20)
    rows = measure(4096, rounds, loops) + measure(500, rounds, loops * 8)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent, check=False).stdout.strip()
    result: dict[str, Any] = {
        "command": "python -m bench.codec" + (" --quick" if args.quick else ""),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "commit": commit or "unknown",
        "python": platform.python_version(), "rounds": rounds, "rows": rows,
    }
    cpu = _keyed_sum_cpu_ns()
    keyed = next(r for r in rows if r["shape"].endswith("keyed sum") and r["batch"] == 4096)
    if cpu:
        half = 0.5 / cpu * 100
        result["keyed_sum_effect"] = {
            "cpu_ns_per_event": cpu,
            "new_pct": (keyed["new"]["total_ns"] - keyed["old"]["total_ns"]) * half,
            "msgpack_pct": (keyed["msgpack"]["total_ns"] - keyed["old"]["total_ns"]) * half,
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "codec.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "codec.md").write_text(_markdown(result))
    print(_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
