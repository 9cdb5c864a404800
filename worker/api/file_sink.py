"""An exactly-once file sink for ``file://`` directories and ``s3://`` prefixes.

Records of a checkpoint interval go into one part file per subtask. At the barrier the part is
uploaded as an uncompleted multipart upload (pending: durable, invisible); when the checkpoint
completes the upload is completed and the file appears under its final name. On S3 this needs
no rename; on a local directory the store stages parts and renames atomically. Readers of the
directory therefore never see a partial or uncommitted file, and after a failure the parts of
uncommitted transactions are aborted, so the committed files hold every record exactly once.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Callable
from typing import Any

from streamjob.worker.api.sinks import TwoPhaseCommitSinkFunction
from streamjob.worker.errors import ConfigError, StorageError


def _json_line(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str) + "\n"


def _csv_line(value: Any) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(value if isinstance(value, list | tuple) else [value])
    return out.getvalue()


_FORMATS: dict[str, tuple[Callable[[Any], str], str]] = {"json": (_json_line, ".jsonl"), "csv": (_csv_line, ".csv")}


class FileSink(TwoPhaseCommitSinkFunction[dict[str, Any]]):
    """Writes records as JSON lines or CSV into committed part files ``part-<subtask>-<id><ext>``.

    ``max_part_bytes`` rolls a part inside a checkpoint interval once it grows past the size
    (the rolled part is still committed only with the checkpoint).
    """

    def __init__(self, uri: str, fmt: str = "json", *, max_part_bytes: int = 64 * 1024 * 1024) -> None:
        if fmt not in _FORMATS:
            raise ConfigError(f"FileSink format must be one of {sorted(_FORMATS)}, got {fmt!r}")
        from streamjob.worker.storage.uri import parse_storage_uri

        self.uri = str(parse_storage_uri(uri))
        self.fmt = fmt
        self.max_part_bytes = max_part_bytes
        self._store: Any = None
        self._buffers: dict[str, list[str]] = {}
        self._sizes: dict[str, int] = {}
        self._subtask = 0

    def open(self, runtime_context: Any) -> None:
        from streamjob.worker.storage.stores import open_store

        self._store = open_store(self.uri)
        self._subtask = runtime_context.get_index_of_this_subtask()

    def begin_transaction(self) -> dict[str, Any]:
        key = f"part-{self._subtask:04d}-{uuid.uuid4().hex[:12]}{_FORMATS[self.fmt][1]}"
        self._buffers[key] = []
        self._sizes[key] = 0
        return {"key": key, "upload_id": None, "parts": []}

    def invoke(self, transaction: dict[str, Any], value: Any) -> None:
        self.invoke_batch(transaction, [value])

    def invoke_batch(self, transaction: dict[str, Any], values: list[Any]) -> None:
        encode = _FORMATS[self.fmt][0]
        key = transaction["key"]
        lines = [encode(v) for v in values]
        self._buffers[key].extend(lines)
        self._sizes[key] += sum(len(line) for line in lines)
        if self._sizes[key] >= self.max_part_bytes:
            self._upload_part(transaction)

    def _upload_part(self, transaction: dict[str, Any]) -> None:
        key = transaction["key"]
        data = "".join(self._buffers[key]).encode()
        self._buffers[key] = []
        self._sizes[key] = 0
        if not data:
            return
        if transaction["upload_id"] is None:
            transaction["upload_id"] = self._store.begin_upload(key)
        number = len(transaction["parts"]) + 1
        part = self._store.upload_part(key, transaction["upload_id"], number, data)
        transaction["parts"].append([part.part_number, part.etag])

    def pre_commit(self, transaction: dict[str, Any]) -> None:
        self._upload_part(transaction)
        self._buffers.pop(transaction["key"], None)
        self._sizes.pop(transaction["key"], None)

    def commit(self, transaction: dict[str, Any]) -> None:
        if transaction["upload_id"] is None:
            return
        from streamjob.worker.storage.object_store import UploadedPart

        parts = [UploadedPart(int(n), str(etag)) for n, etag in transaction["parts"]]
        try:
            self._store.complete_upload(transaction["key"], transaction["upload_id"], parts)
        except StorageError:
            if not self._store.exists(transaction["key"]):
                raise
            # completed before a crash: committing again is a no-op

    def abort(self, transaction: dict[str, Any]) -> None:
        self._buffers.pop(transaction["key"], None)
        self._sizes.pop(transaction["key"], None)
        if transaction["upload_id"] is not None:
            self._store.abort_upload(transaction["key"], transaction["upload_id"])
