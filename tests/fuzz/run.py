"""Runs one fuzz target with atheris (coverage-guided, libFuzzer), or replays a corpus through targets.

``python -m tests.fuzz.run fuzz TARGET --seconds 60`` fuzzes for that long from the committed
seeds (``tests/fuzz/corpus/TARGET``; new inputs go to a scratch directory, never into the
repository) with a fixed seed, a per-input timeout (a hang is a finding) and a memory limit (the
address space is capped, so an input that makes a decoder allocate gigabytes fails inside the
decoder, and libFuzzer's RSS limit catches the rest). A finding is written to ``--artifacts``
and the exit status is non-zero; keep the input under ``corpus/TARGET`` once it is fixed.
``python -m tests.fuzz.run replay [TARGET ...]`` runs every corpus file through its target once.
Called by ``tests/fuzz/test_fuzz.py``.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"
MEMORY_HEADROOM_MB = 1024
"""Address space a fuzzing process may add to what it has mapped once set up: a decoder asking for
more gets MemoryError (CPython's unpickler sizes its memo from a forged PUT index; see codec.py)."""
RSS_LIMIT_MB = 2048
INPUT_TIMEOUT_S = 10
MAX_LEN = 65536


def _limit_memory() -> None:
    with open("/proc/self/statm", encoding="ascii") as statm:
        mapped = int(statm.read().split()[0]) * resource.getpagesize()
    limit = mapped + MEMORY_HEADROOM_MB * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def fuzz(name: str, seconds: int, seed: int, artifacts: Path) -> int:
    import atheris

    with atheris.instrument_imports(include=["streamjob", "tests.fuzz", "tests.support", "msgpack"]):
        from tests.fuzz import targets
    target = targets.by_name(name)
    targets.install_audit_hook()
    run = targets.watched(target.run)
    _limit_memory()
    artifacts.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"fuzz-{target.name}-"))
    seeds = CORPUS / target.name
    argv = [
        sys.argv[0],
        str(scratch),
        *([str(seeds)] if seeds.is_dir() else []),
        f"-max_total_time={seconds}",
        f"-seed={seed}",
        f"-timeout={INPUT_TIMEOUT_S}",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-max_len={MAX_LEN}",
        f"-artifact_prefix={artifacts}/",
        "-print_final_stats=1",
    ]
    try:
        atheris.Setup(argv, run)
        atheris.Fuzz()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


def replay(names: list[str]) -> int:
    from tests.fuzz import targets

    targets.install_audit_hook()
    _limit_memory()
    chosen = [targets.by_name(n) for n in names] if names else targets.TARGETS
    failures = 0
    for target in chosen:
        run = targets.watched(target.run)
        files = sorted((CORPUS / target.name).glob("*")) if (CORPUS / target.name).is_dir() else []
        for path in files:
            try:
                run(path.read_bytes())
            except BaseException:
                failures += 1
                print(f"FAIL {target.name} {path.name}:\n{traceback.format_exc()}", file=sys.stderr)
        print(f"{target.name}: replayed {len(files)} inputs")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.run", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fuzz", help="fuzz one target for a bounded time")
    f.add_argument("target")
    f.add_argument("--seconds", type=int, default=60)
    f.add_argument("--seed", type=int, default=1)
    f.add_argument("--artifacts", type=Path, default=Path(tempfile.gettempdir()) / "streamjob-fuzz")
    r = sub.add_parser("replay", help="run every corpus input through its target once")
    r.add_argument("targets", nargs="*")
    args = parser.parse_args(argv)
    if args.command == "fuzz":
        return fuzz(args.target, args.seconds, args.seed, args.artifacts)
    return replay(args.targets)


if __name__ == "__main__":
    raise SystemExit(main())
