"""File source -> keyed state -> FileSink, on a local directory and on S3: exact output after a
worker kill, files committed whole (a concurrent reader never sees a partial or changing file)."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.storage.stores import open_store
from tests.integration.faultjobs.jobs import compare, read_file_outputs
from tests.integration.faultjobs.runner import HookedProgress, run_job

pytestmark = pytest.mark.integration


def _location(kind: str, tmp_path: Path, request: pytest.FixtureRequest, name: str) -> str:
    if kind == "file":
        return (tmp_path / name).as_uri()
    prefix: str = request.getfixturevalue("s3_prefix")
    return f"{prefix}/{name}"


def _kill_once_at(checkpoint: int) -> Any:
    def hook(progress: HookedProgress, kind: str, data: dict[str, Any]) -> None:
        if kind == "checkpoint" and data["id"] >= checkpoint and not getattr(progress, "killed", False):
            pids = progress.launcher.pids() if progress.launcher is not None else []
            if pids:
                progress.killed = True  # type: ignore[attr-defined]
                os.kill(pids[0], signal.SIGKILL)

    return hook


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_file_source_resumes_exactly_after_a_kill(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    source = _location(kind, tmp_path, request, "input")
    output = _location(kind, tmp_path, request, "output")
    store = open_store(source)
    count = 12_000
    per_file = 1_000
    for f in range(count // per_file):
        store.put(
            f"day{f % 3}/file{f:03d}.txt", "".join(f"{i}\n" for i in range(f * per_file, (f + 1) * per_file)).encode()
        )
    store.put("_SUCCESS", b"")
    code, progress = run_job(
        ["source=file", f"input={source}", f"output={output}", "parallelism=3", "interval=100"],
        tmp_path / "w",
        _location(kind, tmp_path, request, "chk"),
        _kill_once_at(1),
    )
    print("\n".join(progress.lines))
    assert code == 0
    assert progress.count("restarting") >= 1
    problem = compare(read_file_outputs(output), count, exactly_once=True)
    assert problem is None, problem
    assert open_store(output).list_pending_uploads() == []


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_readers_never_see_partial_or_uncommitted_files(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    output = _location(kind, tmp_path, request, "output")
    store = open_store(output)
    seen: dict[str, bytes] = {}
    problems: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for info in store.list(""):
                data = store.get(info.key)
                if info.key in seen and seen[info.key] != data:
                    problems.append(f"{info.key} changed after it appeared")
                seen.setdefault(info.key, data)
                if not data.endswith(b"\n"):
                    problems.append(f"{info.key} is partial")
                for line in data.decode().splitlines():
                    json.loads(line)
            missing = set(seen) - {i.key for i in store.list("")}
            if missing:
                problems.append(f"committed files disappeared: {sorted(missing)}")

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    count = 4_000
    try:
        code, progress = run_job(
            ["source=gen", f"count={count}", "rate=1000", f"output={output}", "interval=150"],
            tmp_path / "w",
            _location(kind, tmp_path, request, "chk"),
            _kill_once_at(3),
        )
    finally:
        stop.set()
        watcher.join(30)
    print("\n".join(progress.lines))
    assert code == 0
    assert not problems, problems[:5]
    assert seen
    assert compare(read_file_outputs(output), count, exactly_once=True) is None


def test_monitored_source_reads_files_added_while_running(tmp_path: Path) -> None:
    import re
    import urllib.request

    source = tmp_path / "input"
    source.mkdir()
    output = (tmp_path / "output").as_uri()
    first, second = 2_000, 1_500
    (source / "a.txt").write_text("".join(f"{i}\n" for i in range(first)))
    state: dict[str, Any] = {}

    def stop_with_savepoint(rest: str, token: str) -> None:
        req = urllib.request.Request(
            f"{rest}/savepoints",
            data=b'{"stop": true}',
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        urllib.request.urlopen(req, timeout=10).read()

    def hook(progress: HookedProgress, kind: str, data: dict[str, Any]) -> None:
        if kind != "checkpoint":
            return
        if "added" not in state and data["id"] >= 2:
            # written under a hidden name and renamed, as a producer of input files should
            (source / ".b.tmp").write_text("".join(f"{i}\n" for i in range(first, first + second)))
            (source / ".b.tmp").rename(source / "b.txt")
            state["added"] = data["id"]
        elif "added" in state and "stopping" not in state and data["id"] >= state["added"] + 6:
            rest = next(
                m.group(1) for line in progress.lines if (m := re.search(r"REST API (http://\S+);", line)) is not None
            )
            state["stopping"] = True
            threading.Thread(target=stop_with_savepoint, args=(rest, progress.rest_token()), daemon=True).start()

    code, progress = run_job(
        ["source=file", f"input={source.as_uri()}", "monitor_ms=100", f"output={output}", "interval=150"],
        tmp_path / "w",
        (tmp_path / "chk").as_uri(),
        hook,
    )
    print("\n".join(progress.lines))
    assert code == 0
    assert state.get("stopping")
    problem = compare(read_file_outputs(output), first + second, exactly_once=True)
    assert problem is None, problem
