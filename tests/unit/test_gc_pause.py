"""The garbage collector held off while a ``streamjob`` process starts (``gc_pause``), and given back after."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamjob.worker import gc_pause
from streamjob.worker.cli import main

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _collector_as_it_was() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    gc_pause.end()
    gc.unfreeze()
    (gc.enable if enabled else gc.disable)()


def test_a_start_pauses_then_freezes_what_it_allocated_and_collects_again() -> None:
    gc.enable()
    gc_pause.pause()
    assert not gc.isenabled()
    gc_pause.resume()
    assert gc.isenabled() and gc.get_freeze_count() > 0
    gc_pause.resume()  # once only
    gc_pause.end()
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_collector_someone_else_turned_off_stays_off() -> None:
    gc.disable()
    gc_pause.pause()
    gc_pause.resume()
    gc_pause.end()
    assert not gc.isenabled() and gc.get_freeze_count() == 0


def test_a_process_that_never_paused_is_left_alone() -> None:
    gc.enable()
    gc_pause.resume()  # run_local called by a library user or a test
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_main_gives_the_collector_back_whatever_the_command_did(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gc.enable()
    assert main(["checkpoints", str(tmp_path)]) == 0
    assert "no completed checkpoints" in capsys.readouterr().out
    assert gc.isenabled() and gc.get_freeze_count() == 0
    assert main(["checkpoints", "nope://x"]) != 0  # an error line, and the collector back all the same
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_the_collector_is_off_while_the_cli_imports_its_modules() -> None:
    """``python -m streamjob.worker.cli``: by the time the argument parser (pydantic) is imported, collection is off."""
    probe = (
        "import gc, json, sys\n"
        "import streamjob.worker.cli as cli\n"
        "seen = []\n"
        "import streamjob.worker.cli_parser as parser\n"
        "real = parser.parse_args\n"
        "def spy(argv):\n"
        "    seen.append(gc.isenabled())\n"
        "    return real(argv)\n"
        "parser.parse_args = spy\n"
        "code = cli.main(['checkpoints', sys.argv[1]])\n"
        "print(json.dumps([seen, gc.isenabled(), code]))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, "/nonexistent-dir"], capture_output=True, text=True, cwd="/")
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [[False], True, 0], done.stderr
