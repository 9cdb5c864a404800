"""FileSink driven as the 2PC operator drives it, on a local directory: visibility, rolling,
formats, recovery (commit again, abort lingering uploads) and rescale-safe cleanup."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.api.file_sink import FileSink
from streamjob.worker.errors import ConfigError
from streamjob.worker.storage.stores import open_store

pytestmark = pytest.mark.unit


class _ListState:
    def __init__(self, values: list[Any]) -> None:
        self.values = list(values)

    def get(self) -> list[Any]:
        return list(self.values)

    def update(self, values: list[Any]) -> None:
        self.values = list(values)


class _Store:
    def __init__(self, union: list[Any]) -> None:
        self.state = _ListState(union)

    def get_union_list_state(self, descriptor: Any) -> _ListState:
        return self.state


class _Init:
    def __init__(self, restored: list[Any] | None) -> None:
        self.store = _Store(restored or [])
        self.restored = restored is not None

    def is_restored(self) -> bool:
        return self.restored

    def get_operator_state_store(self) -> _Store:
        return self.store


class _Runtime:
    def __init__(self, index: int, parallelism: int) -> None:
        self.index = index
        self.parallelism = parallelism

    def get_index_of_this_subtask(self) -> int:
        return self.index

    def get_number_of_parallel_subtasks(self) -> int:
        return self.parallelism


class Driven:
    """One subtask's sink with the operator's bookkeeping (pending handles per checkpoint)."""

    def __init__(
        self,
        sink: FileSink,
        index: int,
        parallelism: int,
        restored: list[Any] | None = None,
        pending: list[Any] | None = None,
        open_txns: list[Any] | None = None,
    ) -> None:
        self.sink = sink
        self.init = _Init(restored)
        sink.initialize_state(self.init)
        sink.open(_Runtime(index, parallelism))
        for txn in pending or []:
            sink.recover_and_commit(txn)
        for txn in open_txns or []:
            sink.recover_and_abort(txn)
        self.txn = sink.begin_transaction()
        self.pending: list[tuple[int, Any]] = []

    def write(self, values: list[Any]) -> None:
        self.sink.invoke_batch(self.txn, values)

    def checkpoint(self, cid: int) -> tuple[list[Any], list[Any]]:
        """Returns (union entries, pending handles) as stored in checkpoint ``cid``."""
        self.sink.snapshot_state(None)
        self.sink.pre_commit(self.txn)
        self.pending.append((cid, self.txn))
        self.txn = self.sink.begin_transaction()
        return json.loads(json.dumps(self.init.store.state.get())), json.loads(json.dumps([t for _, t in self.pending]))

    def complete(self, cid: int) -> None:
        for _cid, txn in [p for p in self.pending if p[0] <= cid]:
            self.sink.commit(txn)
        self.pending = [p for p in self.pending if p[0] > cid]


def _lines(root: Path) -> list[Any]:
    return [json.loads(line) for p in sorted(root.glob("part-*")) for line in p.read_text().splitlines()]


def test_files_appear_only_on_commit(tmp_path: Path) -> None:
    d = Driven(FileSink(tmp_path.as_uri()), 0, 1)
    d.write([1, 2, 3])
    assert list(tmp_path.glob("part-*")) == []
    d.checkpoint(1)
    d.write([4])
    assert list(tmp_path.glob("part-*")) == []
    d.complete(1)
    assert [p.name for p in tmp_path.glob("part-*")] == ["part-0000-00000000.jsonl"]
    assert _lines(tmp_path) == [1, 2, 3]
    d.checkpoint(2)
    d.complete(2)
    assert _lines(tmp_path) == [1, 2, 3, 4]
    assert open_store(tmp_path.as_uri()).list_pending_uploads() == []


def test_rolls_by_size_and_time_and_writes_csv(tmp_path: Path) -> None:
    d = Driven(FileSink(tmp_path.as_uri(), max_part_bytes=10, upload_chunk_bytes=4), 2, 3)
    d.write(list(range(100, 110)))
    d.checkpoint(1)
    d.complete(1)
    names = sorted(p.name for p in tmp_path.glob("part-*"))
    assert len(names) == 4 and all(n.startswith("part-0002-") for n in names)
    assert _lines(tmp_path) == list(range(100, 110))

    timed = tmp_path / "timed"
    d = Driven(FileSink(timed.as_uri(), rollover_interval_ms=1), 0, 1)
    d.write(["a"])
    import time

    time.sleep(0.01)
    d.write(["b"])
    d.checkpoint(1)
    d.complete(1)
    assert len(list(timed.glob("part-*"))) == 2

    out = tmp_path / "csv"
    d = Driven(FileSink(out.as_uri(), "csv"), 0, 1)
    d.write([("a", 1), ["b,c", 2], "x"])
    d.checkpoint(1)
    d.complete(1)
    (path,) = out.glob("part-*.csv")
    assert path.read_text() == 'a,1\n"b,c",2\nx\n'


def test_recovery_commits_again_and_aborts_lingering_uploads(tmp_path: Path) -> None:
    uri = tmp_path.as_uri()
    d = Driven(FileSink(uri, max_part_bytes=8), 0, 1)
    d.write(["a", "b"])
    d.checkpoint(1)
    d.complete(1)  # committed
    d.write(["c", "d"])
    union2, pending2 = d.checkpoint(2)  # checkpoint 2 completes but the commit is lost (crash)
    d.write(["lost-after-2"])
    d.sink.snapshot_state(None)  # uploads the open file: a lingering upload
    store = open_store(uri)
    assert len(store.list_pending_uploads()) >= 2
    # restore from checkpoint 2: its pending handle is committed again, lingering uploads aborted
    r = Driven(FileSink(uri, max_part_bytes=8), 0, 1, restored=union2, pending=pending2)
    assert _lines(tmp_path) == ["a", "b", "c", "d"]
    assert store.list_pending_uploads() == []
    # committing an already committed handle again is a no-op
    r.sink.recover_and_commit(pending2[0])
    r.write(["e"])
    r.checkpoint(3)
    r.complete(3)
    assert sorted(_lines(tmp_path)) == ["a", "b", "c", "d", "e"]
    # the counter continued: no committed file was overwritten
    assert len(list(tmp_path.glob("part-*"))) == len(set(p.name for p in tmp_path.glob("part-*")))


def test_lost_upload_of_uncommitted_file_is_an_error(tmp_path: Path) -> None:
    d = Driven(FileSink(tmp_path.as_uri()), 0, 1)
    d.write(["a"])
    _, pending = d.checkpoint(1)
    f = pending[0]["files"][0]
    open_store(tmp_path.as_uri()).abort_upload(f["key"], f["upload_id"])
    from streamjob.worker.errors import StorageError

    with pytest.raises(StorageError, match="is gone"):
        d.sink.recover_and_commit(pending[0])


def test_rescale_down_keeps_uploads_another_subtask_commits(tmp_path: Path) -> None:
    uri = tmp_path.as_uri()
    old = [Driven(FileSink(uri), i, 3) for i in range(3)]
    union: list[Any] = []
    pendings: list[Any] = []
    for i, d in enumerate(old):
        d.write([f"s{i}-{n}" for n in range(3)])
        u, p = d.checkpoint(1)
        union.extend(u)
        pendings.extend(p)
        d.write([f"s{i}-lingering"])
        d.sink.snapshot_state(None)
    store = open_store(uri)
    assert len(store.list_pending_uploads()) == 6
    # new parallelism 2; subtask 1 initializes first and would see old subtask 2's uploads
    late_owner = next(p for p in pendings if p["files"][0]["key"].startswith("part-0002-"))
    others = [p for p in pendings if p is not late_owner]
    Driven(FileSink(uri), 1, 2, restored=union, pending=others[1:])
    assert any(u.key.startswith("part-0002-") for u in store.list_pending_uploads())
    Driven(FileSink(uri), 0, 2, restored=union, pending=[others[0], late_owner])
    assert store.list_pending_uploads() == []
    assert sorted(_lines(tmp_path)) == sorted(f"s{i}-{n}" for i in range(3) for n in range(3))


def test_invalid_options() -> None:
    with pytest.raises(ConfigError):
        FileSink("file:///tmp/x", "parquet")
    with pytest.raises(ConfigError):
        FileSink("file:///tmp/x", part_prefix="../x")
    with pytest.raises(ConfigError):
        FileSink("file:///tmp/x", rollover_interval_ms=0)


def test_restore_with_another_output_commits_where_the_handle_was_written(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    d = Driven(FileSink(old.as_uri()), 0, 1)
    d.write(["a"])
    union, pending = d.checkpoint(1)
    Driven(FileSink(new.as_uri()), 0, 1, restored=union, pending=pending)
    assert _lines(old) == ["a"]
    assert list(new.glob("part-*")) == []


class _FlakyStore:
    """Delegates to a real store; ``failing`` makes uploads raise as an unreachable server would."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.failing = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if name in ("begin_upload", "upload_part") and self.failing:
            from streamjob.worker.errors import StorageError

            def fail(*args: Any, **kwargs: Any) -> Any:
                raise StorageError("cannot reach the S3 endpoint (injected)")

            return fail
        return attr


def test_a_failed_upload_at_the_barrier_keeps_the_lines(tmp_path: Path) -> None:
    from streamjob.worker.errors import StorageError

    d = Driven(FileSink(tmp_path.as_uri()), 0, 1)
    flaky = _FlakyStore(d.sink.store)
    d.sink._store = flaky  # type: ignore[assignment]
    d.write(["a", "b"])
    flaky.failing = True
    with pytest.raises(StorageError):
        d.checkpoint(1)  # declined: snapshot_state cannot upload
    flaky.failing = False
    d.write(["c"])
    d.checkpoint(2)
    d.complete(2)
    assert _lines(tmp_path) == ["a", "b", "c"]
