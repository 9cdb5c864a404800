"""``streamjob`` argument parsing: job arguments after ``--``, options checked before any request."""

from __future__ import annotations

import pytest

from streamjob.worker.cli import _parser

pytestmark = pytest.mark.unit


def test_the_internal_slot_command_is_not_listed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert "SUPPRESS" not in out and " slot " not in out
    assert _parser().parse_args(["slot", "--jobmaster", "127.0.0.1:1"]).command == "slot"
