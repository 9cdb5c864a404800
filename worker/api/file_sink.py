"""An exactly-once file sink for ``file://`` directories and ``s3://`` prefixes.

Records are encoded (JSON lines or CSV) into part files named ``<prefix>-<subtask>-<counter><ext>``
(``part-0003-00000012.jsonl``). A part file is an S3 multipart upload (on a local directory the
store stages the parts and renames atomically): the encoded lines are uploaded as parts while the
file grows, and the upload is *completed* — the file appears under its final name, whole — only
when the checkpoint that pre-committed it completes. Readers of the directory therefore never see
a partial or uncommitted file, and no rename is needed on S3.

Rolling: every checkpoint ends the files of its transaction (roll on checkpoint); inside a
checkpoint interval a file also rolls when it reaches ``max_part_bytes`` or has been open for
``rollover_interval_ms``. Parts of at least ``upload_chunk_bytes`` are uploaded as the file grows
(S3 wants parts of 5 MiB or more, except the last).

Recovery contract (see ``TwoPhaseCommitSinkFunction``): a transaction handle names its output
location and lists its files with their upload ids and uploaded parts, so a job restored with
another output location still commits them where they were written. On restore, pre-committed
handles are completed again
(idempotent: a file that already exists counts as committed; a handle whose upload is gone and
whose file does not exist raises ``CorruptStateError``, since that would be data loss, and a restart
would meet it again, so the job fails at once). Lingering
uploads — files written after the restored checkpoint, or pre-committed for a checkpoint that
never completed — are aborted: every subtask records, in union operator state, the uploads its
checkpoint references; a restored subtask aborts the pending uploads of this sink that no
restored subtask references and whose part names belong to itself or to a subtask index that
no longer exists (>= the new parallelism), so after a rescale no subtask aborts an upload that
another subtask is about to commit. Part counters continue after the highest counter in state
and in the directory, so a restored or restarted job never overwrites a committed file.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streamjob.worker.api.functions import CheckpointedFunction
from streamjob.worker.api.sinks import TwoPhaseCommitSinkFunction
from streamjob.worker.errors import ConfigError, CorruptStateError, StorageError
from streamjob.worker.state.descriptors import ListStateDescriptor
from streamjob.worker.storage.object_store import ObjectStore, UploadedPart

Txn = dict[str, Any]
"""A transaction handle: ``{"uri": root, "files": [{"key", "upload_id", "parts": [[number, etag], ...]}]}``."""

_STATE: ListStateDescriptor[Any] = ListStateDescriptor("__file_sink_uploads__")


def _json_line(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str) + "\n"


def _csv_line(value: Any) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(value if isinstance(value, list | tuple) else [value])
    return out.getvalue()


_FORMATS: dict[str, tuple[Callable[[Any], str], str]] = {"json": (_json_line, ".jsonl"), "csv": (_csv_line, ".csv")}


@dataclass
class _OpenFile:
    """The file of the writing transaction that receives records now."""

    entry: dict[str, Any]
    opened_at: float
    size: int = 0
    buffer: list[bytes] = field(default_factory=list)
    buffered: int = 0


class FileSink(TwoPhaseCommitSinkFunction[Txn], CheckpointedFunction):
    """Writes records as JSON lines or CSV into part files committed with each checkpoint."""

    def __init__(
        self,
        uri: str,
        fmt: str = "json",
        *,
        max_part_bytes: int = 128 * 1024 * 1024,
        rollover_interval_ms: int | None = None,
        upload_chunk_bytes: int = 8 * 1024 * 1024,
        part_prefix: str = "part",
    ) -> None:
        if fmt not in _FORMATS:
            raise ConfigError(f"FileSink format must be one of {sorted(_FORMATS)}, got {fmt!r}")
        if max_part_bytes <= 0 or upload_chunk_bytes <= 0:
            raise ConfigError("FileSink max_part_bytes and upload_chunk_bytes must be positive")
        if rollover_interval_ms is not None and rollover_interval_ms <= 0:
            raise ConfigError(f"FileSink rollover_interval_ms must be positive, got {rollover_interval_ms}")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", part_prefix):
            raise ConfigError(f"FileSink part_prefix must be a plain file name prefix, got {part_prefix!r}")
        from streamjob.worker.storage.uri import parse_storage_uri

        self.uri = str(parse_storage_uri(uri))
        self.fmt = fmt
        self.max_part_bytes = max_part_bytes
        self.rollover_interval_ms = rollover_interval_ms
        self.upload_chunk_bytes = upload_chunk_bytes
        self.part_prefix = part_prefix
        self._name = re.compile(rf"^{re.escape(part_prefix)}-(\d+)-(\d+){re.escape(_FORMATS[fmt][1])}$")
        self._store: ObjectStore | None = None
        self._subtask = 0
        self._parallelism = 1
        self._counter = 0
        self._restored_entries: list[Any] | None = None
        self._state: Any = None
        self._initialized = False
        self._writing: Txn | None = None
        self._open: _OpenFile | None = None
        self._uncommitted: list[Txn] = []

    # -- lifecycle -------------------------------------------------------------------------------

    def initialize_state(self, context: Any) -> None:
        self._state = context.get_operator_state_store().get_union_list_state(_STATE)
        self._restored_entries = list(self._state.get()) if context.is_restored() else None

    def open(self, runtime_context: Any) -> None:
        from streamjob.worker.storage.stores import open_store

        self._store = open_store(self.uri)
        self._subtask = runtime_context.get_index_of_this_subtask()
        self._parallelism = runtime_context.get_number_of_parallel_subtasks()

    @property
    def store(self) -> ObjectStore:
        """The store of the output location (after ``open``)."""
        if self._store is None:
            raise RuntimeError("FileSink used before open()")
        return self._store

    def owner_of(self, key: str) -> tuple[int, int] | None:
        """``(subtask, counter)`` of one of this sink's part names, else None."""
        match = self._name.match(key)
        return (int(match.group(1)), int(match.group(2))) if match else None

    def _initialize(self) -> None:
        """After recovery (first ``begin_transaction``): abort lingering uploads, continue the counter."""
        self._initialized = True
        store = self.store
        prefix = f"{self.part_prefix}-"
        counter = 0
        for info in store.list(f"{self.part_prefix}-{self._subtask:04d}-"):
            owner = self.owner_of(info.key)
            if owner is not None and owner[0] == self._subtask:
                counter = max(counter, owner[1] + 1)
        entries = self._restored_entries
        if entries is not None:
            referenced = {str(e[2]) for e in entries if e[0] == "upload"}
            for e in entries:
                if e[0] == "next" and int(e[1]) == self._subtask:
                    counter = max(counter, int(e[2]))
            for pending in store.list_pending_uploads(prefix):
                owner = self.owner_of(pending.key)
                if owner is None:
                    continue
                mine = owner[0] == self._subtask or owner[0] >= self._parallelism
                if pending.upload_id in referenced:
                    if owner[0] == self._subtask:
                        counter = max(counter, owner[1] + 1)
                elif mine:
                    store.abort_upload(pending.key, pending.upload_id)
        self._counter = counter
        self._restored_entries = None

    def snapshot_state(self, context: Any) -> None:
        # runs just before pre_commit at the barrier: upload what is buffered so the handle names
        # its upload ids, then record every upload this checkpoint references
        if self._writing is not None and self._open is not None:
            self._flush(self._open)
        entries: list[Any] = [("next", self._subtask, self._counter)]
        txns = [*self._uncommitted, *([self._writing] if self._writing is not None else [])]
        for txn in txns:
            for f in txn["files"]:
                if f["upload_id"] is not None:
                    entries.append(("upload", f["key"], f["upload_id"]))
        self._state.update(entries)

    # -- transactions ----------------------------------------------------------------------------

    def begin_transaction(self) -> Txn:
        if not self._initialized:
            self._initialize()
        txn: Txn = {"uri": self.uri, "files": []}
        self._writing = txn
        self._open = None
        return txn

    def _start_file(self, txn: Txn) -> _OpenFile:
        key = f"{self.part_prefix}-{self._subtask:04d}-{self._counter:08d}{_FORMATS[self.fmt][1]}"
        self._counter += 1
        entry: dict[str, Any] = {"key": key, "upload_id": None, "parts": []}
        txn["files"].append(entry)
        self._open = _OpenFile(entry, time.monotonic())
        return self._open

    def invoke(self, transaction: Txn, value: Any) -> None:
        self.invoke_batch(transaction, [value])

    def invoke_batch(self, transaction: Txn, values: list[Any]) -> None:
        encode = _FORMATS[self.fmt][0]
        interval = None if self.rollover_interval_ms is None else self.rollover_interval_ms / 1000
        current = self._open
        for value in values:
            if current is not None and interval is not None and time.monotonic() - current.opened_at >= interval:
                self._flush(current)
                current = None
            if current is None:
                current = self._start_file(transaction)
            data = encode(value).encode()
            current.buffer.append(data)
            current.buffered += len(data)
            current.size += len(data)
            if current.buffered >= self.upload_chunk_bytes:
                self._flush(current)
            if current.size >= self.max_part_bytes:
                self._flush(current)
                current = None
        self._open = current

    def _flush(self, current: _OpenFile) -> None:
        if not current.buffer:
            return
        # the buffer is dropped only once its part is uploaded: a failed upload (the checkpoint is
        # declined, the task goes on) keeps every line for the next attempt
        entry = current.entry
        data = b"".join(current.buffer)
        store = self.store
        if entry["upload_id"] is None:
            entry["upload_id"] = store.begin_upload(entry["key"])
        part = store.upload_part(entry["key"], entry["upload_id"], len(entry["parts"]) + 1, data)
        entry["parts"].append([part.part_number, part.etag])
        current.buffer = []
        current.buffered = 0

    def pre_commit(self, transaction: Txn) -> None:
        if transaction is self._writing:
            if self._open is not None:
                self._flush(self._open)
            self._open = None
            self._writing = None
        self._uncommitted.append(transaction)

    def _store_of(self, transaction: Txn) -> ObjectStore:
        """The store the handle was written to (a restore may run with another output location)."""
        uri = transaction.get("uri", self.uri)
        if uri == self.uri:
            return self.store
        from streamjob.worker.storage.stores import open_store

        return open_store(uri)

    def commit(self, transaction: Txn) -> None:
        store = self._store_of(transaction)
        for f in transaction["files"]:
            if f["upload_id"] is None:
                continue
            parts = [UploadedPart(int(n), str(etag)) for n, etag in f["parts"]]
            try:
                store.complete_upload(f["key"], f["upload_id"], parts)
            except StorageError as err:
                if not store.exists(f["key"]):
                    # the same handle meets the same gone upload on every restart: final (CorruptStateError)
                    raise CorruptStateError(
                        f"FileSink cannot commit {store.uri(f['key'])}: its upload "
                        f"{f['upload_id']} is gone and the file does not exist ({err})"
                    ) from err
                # completed before a crash: committing again is a no-op
        self._forget(transaction)

    def abort(self, transaction: Txn) -> None:
        if transaction is self._writing:
            self._open = None
            self._writing = None
        store = self._store_of(transaction)
        for f in transaction["files"]:
            if f["upload_id"] is not None:
                store.abort_upload(f["key"], f["upload_id"])
        self._forget(transaction)

    def _forget(self, transaction: Txn) -> None:
        self._uncommitted = [t for t in self._uncommitted if t is not transaction]
