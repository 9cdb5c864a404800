"""Task-local recovery (``set_local_recovery``, Flink's ``state.backend.local-recovery``).

A restore reads each state file from the slot's local copy when the copy matches its handle's size
and checksum, and from checkpoint storage otherwise; either way the state is the checkpoint's, so the
output is exact. The slot's log says which one happened (first local read, first storage read).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.api.environment import StreamExecutionEnvironment
from streamjob.worker.runtime.local_recovery import LocalCopyWriter, LocalFirstReader
from streamjob.worker.snapshot.handles import StateHandle
from streamjob.worker.testing import InMemoryStorage, TestingSink, TestingSource, run_in_process

pytestmark = pytest.mark.unit

EOF_ = TestingSource.EOF
RECORDS = [(k, v) for v in range(1, 41) for k in ("a", "b", "c", "d")]


class _Remote:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.reads: list[str] = []

    def read(self, handle: StateHandle) -> bytes:
        self.reads.append(handle.path)
        return self.files[handle.path]


def _handle(path: str, data: bytes) -> StateHandle:
    return StateHandle(path=path, size=len(data), sha256=hashlib.sha256(data).hexdigest())


def test_the_reader_takes_a_matching_local_copy_and_storage_for_a_missing_or_different_one(tmp_path: Path) -> None:
    good, changed, missing = b"state-1", b"state-2", b"state-3"
    remote = _Remote({"chk-1/a": good, "chk-1/b": changed, "chk-1/c": missing})
    reader = LocalFirstReader(remote, tmp_path, "file:///checkpoints/job")  # type: ignore[arg-type]
    local = reader.dir / "chk-1"
    local.mkdir(parents=True)
    (local / "a").write_bytes(good)
    (local / "b").write_bytes(b"state-X")  # same size, other bytes: the checksum tells
    assert [reader.read(_handle(f"chk-1/{n}", d)) for n, d in (("a", good), ("b", changed), ("c", missing))] == [
        good,
        changed,
        missing,
    ]
    assert (reader.local_hits, reader.remote_reads) == (1, 2)
    assert remote.reads == ["chk-1/b", "chk-1/c"]


def test_the_writer_keeps_what_it_wrote_where_the_reader_looks(tmp_path: Path) -> None:
    class _Inner:
        checkpoint_id, is_savepoint = 7, False

        def write(self, name: str, data: bytes, *, key_groups: tuple[int, int] | None = None) -> StateHandle:
            return _handle(f"chk-7/{name}", data)

    writer = LocalCopyWriter(_Inner(), tmp_path, "s3://bucket/job")  # type: ignore[arg-type]
    handle = writer.write("op-0", b"keyed")
    reader = LocalFirstReader(_Remote({}), tmp_path, "s3://bucket/job")  # type: ignore[arg-type]
    assert reader.read(handle) == b"keyed" and reader.local_hits == 1


def _job(source: TestingSource, out: list[Any], local_recovery: bool) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.get_checkpoint_config().set_local_recovery(local_recovery)
    env.from_source(source).key_by(lambda r: r[0]).reduce(lambda a, b: (a[0], a[1] + b[1])).uid("sums").add_sink(
        TestingSink(out)
    ).uid("out")
    return env


def _expected(records: list[Any]) -> list[tuple[str, int]]:
    totals: Counter[str] = Counter()
    rows = []
    for key, value in records:
        totals[key] += value
        rows.append((key, totals[key]))
    return sorted(rows)


def _local_copies() -> list[Path]:
    return [p for p in (Path(tempfile.gettempdir()) / "streamjob-local-recovery").rglob("*") if p.is_file()]


@pytest.mark.parametrize("copies", ["kept", "corrupted", "off"])
def test_a_restore_reads_the_local_copies_and_the_output_is_exact_either_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, copies: str
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    storage = InMemoryStorage((tmp_path / "remote").as_uri())
    source = TestingSource([*RECORDS[:60], EOF_, *RECORDS[60:]])
    out: list[Any] = []
    first = run_in_process(_job(source, out, copies != "off"), parallelism=2, storage=storage)
    assert sorted(tuple(r) for r in out) == _expected(RECORDS[:60])
    kept = _local_copies()
    if copies == "off":
        assert kept == []
    else:
        assert kept, "local recovery kept no copy of the checkpoint"
    if copies == "corrupted":
        for path in kept:
            path.write_bytes(b"\0" * path.stat().st_size)
    out.clear()
    with caplog.at_level(logging.INFO, logger="streamjob.worker.runtime.local_recovery"):
        second = run_in_process(_job(source, out, copies != "off"), parallelism=2, storage=storage, restore="latest")
    assert second.job_id == first.job_id
    assert sorted(tuple(r) for r in out) == sorted(set(_expected(RECORDS)) - set(_expected(RECORDS[:60])))
    said = [r.getMessage() for r in caplog.records if r.name == "streamjob.worker.runtime.local_recovery"]
    if copies == "kept":
        assert any("restoring state from the local copy" in m for m in said), said
        assert not any("reading it from checkpoint storage" in m for m in said), said
    elif copies == "corrupted":
        assert any("does not match its checksum" in m for m in said), said
        assert not any("restoring state from the local copy" in m for m in said), said
    else:
        assert said == []
