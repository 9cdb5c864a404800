"""The CLI's REST client parses answers into the REST contract; a body that is not one is one error line."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.errors import StreamJobError
from streamjob.worker.protocol.rest import JobState, SavepointStatus
from streamjob.worker.rest_client import RestClient

pytestmark = pytest.mark.unit
RECORDED = Path(__file__).parent / "rest_responses"


def _recorded(name: str) -> Any:
    return json.loads((RECORDED / f"{name}.json").read_text())


ANSWERS: dict[tuple[str, str], Any] = {
    ("GET", "/job"): _recorded("job_running"),
    ("POST", "/savepoints"): _recorded("savepoint_triggered"),
    ("GET", "/savepoints/f7cb04df62cc"): _recorded("savepoint_completed"),
    ("POST", "/checkpoints"): _recorded("checkpoint_triggered"),
    ("POST", "/cancel"): _recorded("cancel"),
    ("GET", "/savepoints/garbled"): {**_recorded("savepoint_completed"), "status": "DONE"},
}


@pytest.fixture
def server() -> Iterator[tuple[str, list[tuple[str, str, Any]]]]:
    seen: list[tuple[str, str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            seen.append((self.command, self.path, body))
            data = json.dumps(ANSWERS[(self.command, self.path)]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer

        def log_message(self, *_: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # a short poll: shutdown() waits for the loop to look again (0.5 s by default, per test)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_every_call_returns_its_model(server: tuple[str, list[tuple[str, str, Any]]]) -> None:
    base, seen = server
    client = RestClient(base, "tok")
    job = client.job()
    assert job.state is JobState.RUNNING and job.name == "keyed-sum" and len(job.workers) == 2
    started = client.trigger_savepoint(None, stop=True)
    assert started.request_id == "f7cb04df62cc" and started.directory
    view = client.savepoint(started.request_id)
    assert view.status is SavepointStatus.COMPLETED and view.location
    assert client.trigger_checkpoint().id == 3
    assert client.cancel().state == "CANCELLING"
    assert seen[1] == ("POST", "/savepoints", {"target": None, "stop": True})


def test_a_body_that_is_not_the_contract_is_one_line_naming_the_field(
    server: tuple[str, list[tuple[str, str, Any]]],
) -> None:
    base, _ = server
    with pytest.raises(StreamJobError) as caught:
        RestClient(base).savepoint("garbled")
    message = str(caught.value)
    assert "\n" not in message
    assert "answered a body that is not a SavepointView (status: Input should be" in message
    assert "--jobmaster" in message
