"""The file source: lines of every file under a ``file://`` directory or an ``s3://`` prefix.

Used by ``StreamExecutionEnvironment.read_text_file`` (and ``env.from_source(FileSource(...))``).
Every file is read by exactly one subtask, chosen by ``stable_path_owner`` (a hash of the file's
key, the same in every process and run). Files are treated as immutable once they are listed.
Keys whose last segment starts with ``.`` or ``_`` are ignored (hidden and marker files, as in
Flink), so a sink's staging objects never show up as input.

Recovery contract: a reader's split state is one ``(key, lines_consumed, finished)`` tuple per
file it has started, so a restored reader resumes each file exactly after the last line emitted
before the checkpoint's barrier and never reads a finished file again. The state is
redistributed as a *union*: after a restore at another parallelism every subtask sees every
file's progress and keeps the files it now owns, so a rescale neither loses nor repeats a line.
With ``monitor_interval_ms`` the source is unbounded and lists the location again at that
interval, reading files that appeared since; without it the files listed at start are read and
the source ends.
"""

from __future__ import annotations

import time
from typing import Any

from streamjob.worker.api.sources import Source, SourceReader, SourceReaderContext, stable_path_owner
from streamjob.worker.errors import ConfigError
from streamjob.worker.storage.object_store import ObjectStore

FilePosition = tuple[str, int, bool]
"""One file's split state: its key (relative to the source URI), lines consumed, finished."""


def is_input_key(key: str) -> bool:
    """Whether a listed key is an input file (its name does not start with ``.`` or ``_``)."""
    name = key.rsplit("/", 1)[-1]
    return bool(name) and not name.startswith((".", "_"))


def split_lines(data: bytes, key: str) -> list[str]:
    """The lines of a file's bytes (UTF-8, LF or CRLF; no empty line after a final newline)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"file source: {key} is not UTF-8 text ({err})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


class FileSource(Source):
    """Lines of the files under ``uri``; continuous discovery with ``monitor_interval_ms``."""

    redistribution = "union"

    def __init__(self, uri: str, monitor_interval_ms: int | None = None) -> None:
        from streamjob.worker.storage.uri import parse_storage_uri

        if monitor_interval_ms is not None and monitor_interval_ms <= 0:
            raise ConfigError(f"file source: monitor_interval_ms must be positive, got {monitor_interval_ms}")
        self.uri = str(parse_storage_uri(uri))
        self.monitor_interval_ms = monitor_interval_ms
        self.bounded = monitor_interval_ms is None

    def open_store(self) -> ObjectStore:
        """The store rooted at the source URI (S3 settings from the environment)."""
        from streamjob.worker.storage.stores import open_store

        return open_store(self.uri)

    def create_reader(self, ctx: SourceReaderContext, restored: list[Any] | None) -> SourceReader:
        positions: dict[str, tuple[int, bool]] = {}
        for entry in restored or []:
            key, consumed, finished = str(entry[0]), int(entry[1]), bool(entry[2])
            if stable_path_owner(key, ctx.parallelism) != ctx.subtask_index:
                continue
            old = positions.get(key)
            # union state may hold a file twice only if it was owned twice; keep the furthest
            if old is None or (finished, consumed) > (old[1], old[0]):
                positions[key] = (consumed, finished)
        return FileSourceReader(self.open_store(), ctx, positions, self.monitor_interval_ms)


class FileSourceReader(SourceReader):
    """Reads the files one subtask owns, one after another, in key order of discovery."""

    def __init__(
        self,
        store: ObjectStore,
        ctx: SourceReaderContext,
        positions: dict[str, tuple[int, bool]],
        monitor_interval_ms: int | None,
    ) -> None:
        self._store = store
        self._ctx = ctx
        self._positions = positions
        self._interval_s = None if monitor_interval_ms is None else monitor_interval_ms / 1000
        self._queue: list[str] = sorted(k for k, (_, done) in positions.items() if not done)
        self._listed = False
        self._next_listing = 0.0
        self._lines: list[str] | None = None
        self._last_key = ""  # the file the last poll read from

    def _discover(self) -> None:
        known = self._positions
        fresh = []
        for info in self._store.list(""):
            key = info.key
            if key in known or not is_input_key(key):
                continue
            if stable_path_owner(key, self._ctx.parallelism) == self._ctx.subtask_index:
                known[key] = (0, False)
                fresh.append(key)
        self._queue.extend(sorted(fresh))
        self._listed = True
        if self._interval_s is not None:
            self._next_listing = time.monotonic() + self._interval_s

    def poll(self, max_records: int) -> list[Any] | None:
        if not self._listed or (
            self._interval_s is not None and not self._queue and time.monotonic() >= self._next_listing
        ):
            self._discover()
        if not self._queue:
            return [] if self._interval_s is not None else None
        key = self._last_key = self._queue[0]
        consumed, _ = self._positions[key]
        if self._lines is None:
            self._lines = split_lines(self._store.get(key), self._store.uri(key))
        batch = self._lines[consumed : consumed + max_records]
        consumed += len(batch)
        finished = consumed >= len(self._lines)
        self._positions[key] = (consumed, finished)
        if finished:
            self._queue.pop(0)
            self._lines = None
        return batch

    def poll_splits(self, max_records: int) -> list[tuple[Any, list[Any]]] | None:
        """A poll reads from one file: its split id is the file's key."""
        batch = self.poll(max_records)
        if batch is None:
            return None
        return [(self._last_key, batch)] if batch else []

    def active_splits(self) -> list[Any]:
        """The files discovered and not finished (all of them hold the watermark back, read or not)."""
        return list(self._queue)

    def snapshot(self) -> list[Any]:
        return [(key, consumed, finished) for key, (consumed, finished) in sorted(self._positions.items())]

    def next_poll_delay_s(self) -> float:
        if self._queue or self._interval_s is None:
            return 0.0
        return max(0.0, min(0.2, self._next_listing - time.monotonic()))
