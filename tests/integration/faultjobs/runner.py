"""Runs a ``jobs.py`` pipeline in local mode from a test, with a hook on every progress event."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamjob.worker.config import JobConfig
from streamjob.worker.local import Progress, run_local

JOB_FILE = str(Path(__file__).with_name("jobs.py").resolve()) + ":build"


class HookedProgress(Progress):
    """Records every event and line; calls ``hook(progress, kind, data)`` on each event."""

    def __init__(self, hook: Callable[[HookedProgress, str, dict[str, Any]], None] | None = None) -> None:
        super().__init__(quiet=True)
        self.hook = hook
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.lines: list[str] = []

    def line(self, text: str) -> None:
        self.lines.append(text)
        super().line(text)

    def event(self, kind: str, data: dict[str, Any]) -> None:
        self.events.append((kind, data))
        super().event(kind, data)
        if self.hook is not None:
            self.hook(self, kind, data)

    def rest_token(self) -> str:
        """The run's REST token (for mutating REST calls), read from the file its progress line names."""
        path = next(m.group(1) for line in self.lines if (m := re.search(r"REST token in (\S+) \(", line)))
        return Path(path).read_text(encoding="utf-8").strip()

    def count(self, kind: str) -> int:
        """How many events of ``kind`` happened."""
        return sum(1 for k, _ in self.events if k == kind)


def run_job(
    args: list[str],
    work: Path,
    checkpoints_uri: str,
    hook: Callable[[HookedProgress, str, dict[str, Any]], None] | None = None,
) -> tuple[int, HookedProgress]:
    """Runs ``jobs.py:build`` with ``args`` to its end; returns the exit code and the progress record."""
    progress = HookedProgress(hook)
    config = JobConfig(name="faultjob", entrypoint=JOB_FILE, args=args, checkpoints_uri=checkpoints_uri, rest_port=0)
    work.mkdir(parents=True, exist_ok=True)
    code = run_local(config, progress=progress, work_dir=work)
    return code, progress
