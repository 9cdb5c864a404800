"""FileSource readers on a local directory: ownership, exact resume, union rescale, discovery."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.api.file_source import FileSource, is_input_key, split_lines
from streamjob.worker.api.sources import SourceReader, SourceReaderContext, stable_path_owner

pytestmark = pytest.mark.unit


def _write(root: Path, name: str, lines: list[str]) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


def _drain(reader: SourceReader, limit: int | None = None, batch: int = 3) -> list[Any]:
    out: list[Any] = []
    while limit is None or len(out) < limit:
        got = reader.poll(batch if limit is None else min(batch, limit - len(out)))
        if got is None:
            break
        out.extend(got)
    return out


def _files(root: Path, count: int = 6, lines: int = 7) -> set[str]:
    expected = set()
    for f in range(count):
        rows = [f"f{f}-l{i}" for i in range(lines)]
        _write(root, f"dir{f % 2}/file{f}.txt", rows)
        expected.update(rows)
    return expected


def test_lines_helpers() -> None:
    assert split_lines(b"a\r\nb\n\nc", "k") == ["a", "b", "", "c"]
    assert split_lines(b"", "k") == []
    assert is_input_key("a/b.txt") and not is_input_key("a/.b.txt") and not is_input_key("_SUCCESS")


def test_every_line_once_over_subtasks(tmp_path: Path) -> None:
    expected = _files(tmp_path)
    _write(tmp_path, "_ignored", ["x"])
    source = FileSource(tmp_path.as_uri())
    got: list[str] = []
    for i in range(3):
        reader = source.create_reader(SourceReaderContext(i, 3, 0), None)
        part = _drain(reader)
        for line in part:
            key = f"dir{int(line[1]) % 2}/file{line[1]}.txt"
            assert stable_path_owner(key, 3) == i
        got.extend(part)
    assert sorted(got) == sorted(expected)


def test_resume_exactly_and_rescale_with_union_state(tmp_path: Path) -> None:
    expected = _files(tmp_path, count=8, lines=5)
    source = FileSource(tmp_path.as_uri())
    emitted: list[str] = []
    union: list[Any] = []
    for i in range(2):
        reader = source.create_reader(SourceReaderContext(i, 2, 0), None)
        emitted.extend(_drain(reader, limit=7 + i * 4))
        union.extend(reader.snapshot())
        _drain(reader, limit=2)  # read after the snapshot: replayed after the failure
    # restore at parallelism 3: every subtask sees the union and keeps its own files
    for i in range(3):
        reader = source.create_reader(SourceReaderContext(i, 3, 1), list(union))
        emitted.extend(_drain(reader))
    assert sorted(emitted) == sorted(expected)


def test_finished_files_are_not_read_again(tmp_path: Path) -> None:
    expected = _files(tmp_path, count=2, lines=3)
    source = FileSource(tmp_path.as_uri())
    reader = source.create_reader(SourceReaderContext(0, 1, 0), None)
    assert sorted(_drain(reader)) == sorted(expected)
    state = reader.snapshot()
    assert all(done for _, _, done in state)
    assert _drain(source.create_reader(SourceReaderContext(0, 1, 1), state)) == []


def test_monitoring_discovers_new_files(tmp_path: Path) -> None:
    _write(tmp_path, "a.txt", ["a1", "a2"])
    source = FileSource(tmp_path.as_uri(), monitor_interval_ms=50)
    assert not source.bounded
    reader = source.create_reader(SourceReaderContext(0, 1, 0), None)
    assert reader.poll(10) == ["a1", "a2"]
    assert reader.poll(10) == []
    _write(tmp_path, "b.txt", ["b1"])
    deadline = time.monotonic() + 5
    got: list[Any] = []
    while not got and time.monotonic() < deadline:
        time.sleep(reader.next_poll_delay_s())
        got = reader.poll(10) or []
    assert got == ["b1"]
    state = reader.snapshot()
    restored = source.create_reader(SourceReaderContext(0, 1, 1), state)
    _write(tmp_path, "c.txt", ["c1"])
    assert restored.poll(10) == ["c1"]


def test_invalid_interval() -> None:
    from streamjob.worker.errors import ConfigError

    with pytest.raises(ConfigError):
        FileSource("file:///tmp/x", monitor_interval_ms=0)
