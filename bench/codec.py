"""Micro-benchmark of the record codec: the pickle path before the fix against the codec now.

``.venv/bin/python -m bench.codec`` (``--quick`` for a smoke run) measures, for typical batches,
the CPU ns per record of encoding and decoding a batch with

- **old**: the codec before the fix (``pickle.dumps`` protocol 5, and an unpickler whose
  ``find_class`` admitted any name under the job's module; reproduced here, it is gone from the
  runtime);
- **new**: ``RecordCodec`` as the runtime uses it: msgpack for plain values (rows of tuples as
  columns), pickle with the opcode check and the exact allow-list for the rest;
- **safe pickle**: the new codec's pickle path forced for every batch (opcode check + allow-list):
  what plain batches would cost if they kept pickle; the reason they do not.

The paths run interleaved, round after round, and the best round counts (CPU time, the least
disturbed by other load). Results go to ``bench/results/codec.json`` and ``codec.md``, with the
estimated effect on the keyed-sum job at p=2 (half of its records cross between processes), from
that job's CPU ns/event in ``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import io
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

from streamjob.worker.runtime.codec import RecordCodec

RESULTS = Path(__file__).resolve().parent / "results"


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
        encoded = {
            "old": old_encode(records),
            "new": codec.encode(records),
            "safe_pickle": codec._encode_pickle(records),
        }
        assert old_decode(encoded["old"]) == records and codec.decode(encoded["new"]) == records
        assert codec.decode(encoded["safe_pickle"]) == records
        paths: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
            "old": (lambda r=records: old_encode(r), lambda d=encoded["old"]: old_decode(d)),
            "new": (lambda r=records: codec.encode(r), lambda d=encoded["new"]: codec.decode(d)),
            "safe_pickle": (
                lambda r=records: codec._encode_pickle(r),
                lambda d=encoded["safe_pickle"]: codec.decode(d),
            ),
        }
        best: dict[str, list[float]] = {name: [float("inf"), float("inf")] for name in paths}
        for _ in range(rounds):
            for name, (enc, dec) in paths.items():
                best[name][0] = min(best[name][0], _cpu_ns(enc, loops) / batch_size)
                best[name][1] = min(best[name][1], _cpu_ns(dec, loops) / batch_size)
        row: dict[str, Any] = {"shape": shape, "batch": batch_size, "format": encoded["new"][0]}
        for name, (enc_ns, dec_ns) in best.items():
            row[name] = {
                "encode_ns": round(enc_ns, 1),
                "decode_ns": round(dec_ns, 1),
                "total_ns": round(enc_ns + dec_ns, 1),
                "bytes": len(encoded[name]),
            }
        for name in ("new", "safe_pickle"):
            row[f"{name}_vs_old_pct"] = round(100 * (row[name]["total_ns"] / row["old"]["total_ns"] - 1), 1)
        rows.append(row)
    return rows


def _keyed_sum_cpu_ns() -> float | None:
    """The keyed sum's CPU ns/event at p=2 (median) from the last full suite run, if there is one."""
    try:
        latest = json.loads((RESULTS / "latest.json").read_text())
        return float(latest["scenarios"]["p2"]["summary"]["cpu_ns_per_event"]["median"])
    except (OSError, ValueError, TypeError, KeyError):
        return None


_FORMATS = {1: "msgpack values", 2: "msgpack rows", 3: "pickle"}


def _markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Record codec micro-benchmark",
        "",
        f"Command: `{result['command']}` — {result['measured_at']} — code at {result['commit']}, "
        f"Python {result['python']}, best of {result['rounds']} interleaved rounds (CPU ns per record; "
        "enc/dec/total). old = pickle with the traversing allow-list (before the fix); new = the codec; "
        "safe pickle = the codec's checked pickle path for every batch.",
        "",
        "| shape | batch | new format | old | new | new vs old | safe pickle | safe pickle vs old |",
        "|---|---:|---|---|---|---:|---|---:|",
    ]
    for row in result["rows"]:
        cells = {
            n: f"{row[n]['encode_ns']} / {row[n]['decode_ns']} / **{row[n]['total_ns']}**"
            for n in ("old", "new", "safe_pickle")
        }
        lines.append(
            f"| {row['shape']} | {row['batch']} | {_FORMATS[row['format']]} | {cells['old']} | "
            f"{cells['new']} | {row['new_vs_old_pct']:+} % | {cells['safe_pickle']} | "
            f"{row['safe_pickle_vs_old_pct']:+} % |"
        )
    lines.append("")
    effect = result.get("keyed_sum_effect")
    if effect:
        lines.append(
            f"Estimated effect on the keyed sum at p=2 ({effect['cpu_ns_per_event']:.0f} CPU ns/event in "
            f"latest.json, half of the records cross between slots, (int, int) batches of 4096): "
            f"new {effect['new_pct']:+.2f} % CPU per event; safe pickle {effect['safe_pickle_pct']:+.2f} %."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.codec", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (figures not representative)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rounds, loops = (2, 3) if args.quick else (15, 20)
    rows = measure(4096, rounds, loops) + measure(500, rounds, loops * 8)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, check=False
    ).stdout.strip()
    result: dict[str, Any] = {
        "command": "python -m bench.codec" + (" --quick" if args.quick else ""),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit or "unknown",
        "python": platform.python_version(),
        "rounds": rounds,
        "rows": rows,
    }
    cpu = _keyed_sum_cpu_ns()
    keyed = next(r for r in rows if r["shape"].endswith("keyed sum") and r["batch"] == 4096)
    if cpu:
        half = 0.5 / cpu * 100
        result["keyed_sum_effect"] = {
            "cpu_ns_per_event": cpu,
            "new_pct": (keyed["new"]["total_ns"] - keyed["old"]["total_ns"]) * half,
            "safe_pickle_pct": (keyed["safe_pickle"]["total_ns"] - keyed["old"]["total_ns"]) * half,
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "codec.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "codec.md").write_text(_markdown(result))
    print(_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
