"""The slots' standard output writes whole lines only (``worker/whole_lines.py``).

Two slot processes share one terminal or pipe; ``print()`` writes the text and the newline separately,
so before this two prints at once came out as ``AB`` and two empty lines.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamjob.worker.whole_lines import WholeLineStdout, whole_line_chunks

pytestmark = pytest.mark.unit


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300), max_size=20))
def test_chunks_are_whole_lines_and_lose_nothing(pieces: list[str]) -> None:
    pending, written = "", b""
    for piece in pieces:
        chunks, pending = whole_line_chunks(pending + piece, limit=64)
        for chunk in chunks:
            assert chunk.endswith(b"\n")
            assert len(chunk) <= 64 or chunk.count(b"\n") == 1  # only a single over-long line exceeds it
        written += b"".join(chunks)
    expected = "".join(pieces).encode("utf-8", "backslashreplace")
    assert written + pending.encode("utf-8", "backslashreplace") == expected
    assert "\n" not in pending


def test_prints_from_threads_and_processes_never_cut_into_each_other() -> None:
    """Two processes, each with two threads, print 2,000 lines each into one pipe: every line is whole."""
    child = (
        "import sys, threading\n"
        "from streamjob.worker.whole_lines import WholeLineStdout\n"
        "sys.stdout = WholeLineStdout(1)\n"
        "tag = sys.argv[1]\n"
        "def run(t):\n"
        "    for i in range(1000):\n"
        "        print(f'{tag}{t}-' + 'x' * (i % 50) + f'-{i}')\n"
        "threads = [threading.Thread(target=run, args=(t,)) for t in range(2)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
    )
    read, write = os.pipe()
    procs = [
        subprocess.Popen([sys.executable, "-c", child, tag], stdout=write, env={**os.environ, "PYTHONPATH": ""})
        for tag in "AB"
    ]
    os.close(write)
    with os.fdopen(read, "r") as out:
        lines = out.read().split("\n")
    assert all(p.wait(60) == 0 for p in procs)
    assert lines.pop() == ""
    assert len(lines) == 4000
    for line in lines:
        tag, _, i = line.rpartition("-")
        assert tag[:1] in "AB" and tag[1] in "01" and tag[2:].strip("-x") == "", line
        assert line.count("-") == 2 and 0 <= int(i) < 1000, line


def test_flush_writes_an_unfinished_line() -> None:
    read, write = os.pipe()
    stream = WholeLineStdout(write)
    stream.write("no newline yet")
    stream.flush()
    os.close(write)
    with os.fdopen(read, "rb") as out:
        assert out.read() == b"no newline yet"
