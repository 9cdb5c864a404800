"""A slot's standard output that writes whole lines only, so the slots' prints never cut into each other.

Every slot process of a local run writes to the same terminal or pipe. ``print()`` makes two writes (the
text, then the newline), so two slots printing ``A`` and ``B`` at once produced ``AB`` and two empty lines. This
stream keeps what follows the last newline until the line is complete and hands the kernel whole lines
in writes of at most ``PIPE_BUF`` bytes (a pipe never interleaves such a write with another), at once:
a print is visible immediately (terminal, ``kubectl logs``) even if the process dies right after it.
Installed by ``slot.main``; thread-safe, and a line's pieces are gathered per thread, as legacy sources
print from their own thread.
"""

from __future__ import annotations

import io
import os
import select
import threading

PIPE_BUF = getattr(select, "PIPE_BUF", 4096)


def whole_line_chunks(text: str, limit: int = PIPE_BUF) -> tuple[list[bytes], str]:
    """``text`` as writes of whole lines, and the unfinished rest after its last newline.

    Each write is at most ``limit`` bytes, unless one line alone is longer.
    """
    head, newline, rest = text.rpartition("\n")
    if not newline:
        return [], text
    chunks: list[bytes] = []
    current = bytearray()
    for line in head.split("\n"):
        data = line.encode("utf-8", "backslashreplace") + b"\n"
        if current and len(current) + len(data) > limit:
            chunks.append(bytes(current))
            current.clear()
        current += data
    if current:
        chunks.append(bytes(current))
    return chunks, rest


class WholeLineStdout(io.TextIOBase):
    """A text stream over a file descriptor that writes complete lines immediately and nothing else."""

    encoding = "utf-8"

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self._pending: dict[int, str] = {}  # per thread: print() writes text and newline in two calls
        self._lock = threading.Lock()

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        thread = threading.get_ident()
        with self._lock:
            chunks, rest = whole_line_chunks(self._pending.pop(thread, "") + text)
            if rest:
                self._pending[thread] = rest
            for chunk in chunks:
                self._write_all(chunk)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            for text in pending.values():
                self._write_all(text.encode("utf-8", "backslashreplace"))

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
