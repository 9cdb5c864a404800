"""The REST contract (``protocol/rest.py``): recorded real bodies round-trip exactly, and the handlers send it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import BaseModel, ValidationError

from streamjob.worker.checkpoint.stats import CheckpointRecord, CheckpointStats
from streamjob.worker.config import parse_job_config
from streamjob.worker.jobmaster.jobmaster import JobMaster
from streamjob.worker.jobmaster.plan import resolve_plan
from streamjob.worker.jobmaster.rest import build_app, checkpoints_overview
from streamjob.worker.loader import load_job
from streamjob.worker.protocol.rest import (
    CancelAccepted,
    CheckpointEntry,
    CheckpointKind,
    CheckpointsOverview,
    CheckpointStatus,
    CheckpointTriggered,
    ErrorBody,
    Health,
    JobOverview,
    JobState,
    SavepointStatus,
    SavepointTriggered,
    SavepointView,
)

pytestmark = pytest.mark.unit
RECORDED = Path(__file__).parent / "rest_responses"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "balance.py"

MODELS: dict[str, type[BaseModel]] = {
    "cancel": CancelAccepted,
    "checkpoint_triggered": CheckpointTriggered,
    "checkpoints": CheckpointsOverview,
    "error_400_stop": ErrorBody,
    "error_400_target": ErrorBody,
    "error_404": ErrorBody,
    "health_running": Health,
    "job_restarted": JobOverview,
    "job_running": JobOverview,
    "savepoint_completed": SavepointView,
    "savepoint_in_progress": SavepointView,
    "savepoint_triggered": SavepointTriggered,
}


def _recorded(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((RECORDED / f"{name}.json").read_text())
    return body


def test_every_recorded_body_has_a_model() -> None:
    assert sorted(p.stem for p in RECORDED.glob("*.json")) == sorted(MODELS)


#: Optional keys added after the recordings, with the value a model writes when the body had none.
ADDED_LATER: dict[str, Any] = {"failure_detail": None, "rescale": None, "spare_slots": 0, "slots": None}


#: The same for each vertex of ``GET /job``.
VERTEX_ADDED_LATER: dict[str, Any] = {"slot_group": "default"}


def _without_added(dump: dict[str, Any]) -> dict[str, Any]:
    assert all(dump[k] == ADDED_LATER[k] for k in ADDED_LATER.keys() & dump.keys()), dump
    out = {k: v for k, v in dump.items() if k not in ADDED_LATER}
    if "vertices" in out:
        assert all(v[k] == VERTEX_ADDED_LATER[k] for v in out["vertices"] for k in VERTEX_ADDED_LATER), out
        out["vertices"] = [{k: x for k, x in v.items() if k not in VERTEX_ADDED_LATER} for v in out["vertices"]]
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_recorded_body_round_trips_exactly(name: str) -> None:
    body = _recorded(name)
    model = MODELS[name].model_validate(body)
    assert _without_added(model.model_dump(mode="json")) == body
    assert _without_added(json.loads(model.model_dump_json())) == body


def test_the_recorded_values_come_back_typed() -> None:
    job = JobOverview.model_validate(_recorded("job_restarted"))
    assert job.state is JobState.RUNNING and job.restarts == 1 and job.failure
    assert job.workers[0].address[1] > 0 and isinstance(job.workers[0].address, tuple)
    stats = CheckpointsOverview.model_validate(_recorded("checkpoints"))
    assert stats.history[0].kind is CheckpointKind.SAVEPOINT
    assert {entry.status for entry in stats.history} == {CheckpointStatus.COMPLETED}
    assert stats.latest.completed is not None and stats.latest.completed.kind is CheckpointKind.CHECKPOINT
    assert SavepointView.model_validate(_recorded("savepoint_completed")).status is SavepointStatus.COMPLETED


def test_clients_ignore_keys_a_newer_jobmaster_adds_and_refuse_missing_or_mistyped_ones() -> None:
    body = _recorded("job_running")
    assert JobOverview.model_validate({**body, "new_field": [1, 2]}) == JobOverview.model_validate(body)
    without_state = {k: v for k, v in body.items() if k != "state"}
    with pytest.raises(ValidationError, match="state"):
        JobOverview.model_validate(without_state)
    with pytest.raises(ValidationError, match="state"):
        JobOverview.model_validate({**body, "state": "DANCING"})
    with pytest.raises(ValidationError, match="status"):
        SavepointView.model_validate({**_recorded("savepoint_completed"), "status": "MAYBE"})


@pytest.mark.parametrize(
    "text, state",
    [
        ("RUNNING", JobState.RUNNING),
        ("running", JobState.RUNNING),
        ("CANCELLED", JobState.CANCELED),
        (" failed ", JobState.FAILED),
    ],
)
def test_job_state_reads_any_case_and_the_british_spelling(text: str, state: JobState) -> None:
    assert JobState(text) is state


def test_job_state_refuses_what_it_does_not_know() -> None:
    with pytest.raises(ValueError, match="DANCING"):
        JobState("DANCING")
    with pytest.raises(ValueError):
        JobState(3)  # type: ignore[arg-type]


def test_ended_states() -> None:
    assert {s for s in JobState if s.ended} == {JobState.FINISHED, JobState.CANCELED, JobState.FAILED}
    assert not JobState.RUNNING.starting and JobState.RESTARTING.starting and not JobState.FAILED.starting


def _stats() -> CheckpointStats:
    stats = CheckpointStats()
    stats.restored_from = "file:///ckpt/chk-3/_metadata"
    stats.record(CheckpointRecord(4, "checkpoint", "COMPLETED", 1700, 12, 2154, "file:///ckpt/chk-4/_metadata"))
    stats.record(CheckpointRecord(5, "checkpoint", "FAILED", 1800, 600000, failure="Checkpoint expired"))
    stats.record(CheckpointRecord(6, "savepoint", "COMPLETED", 1900, 20, 99, "file:///sp/x/_metadata", cpu_ms=1.5))
    return stats


def test_the_checkpoints_body_is_what_the_statistics_always_rendered() -> None:
    stats = _stats()
    overview = checkpoints_overview(stats, in_progress=1)
    assert overview.to_json() == stats.to_json(1)
    assert overview.history[1].status is CheckpointStatus.FAILED and overview.history[1].failure == "Checkpoint expired"
    assert overview.latest.savepoint is not None and overview.latest.savepoint.id == 6


def test_the_checkpoints_body_before_any_checkpoint() -> None:
    stats = CheckpointStats()
    assert checkpoints_overview(stats, 0).to_json() == stats.to_json(0)


def _jobmaster(tmp_path: Path) -> JobMaster:
    loaded = load_job(str(EXAMPLE), [])
    config = parse_job_config(
        {"name": "balance", "entrypoint": str(EXAMPLE), "checkpoints_uri": tmp_path.as_uri()}, source="(test)"
    )
    return JobMaster(resolve_plan(config, loaded, default_checkpoints_uri=tmp_path.as_uri()))


def _calls(jm: JobMaster, calls: list[tuple[str, str, Any]]) -> list[tuple[int, Any]]:
    async def main() -> list[tuple[int, Any]]:
        runner = web.AppRunner(build_app(jm, rest_token="t0k"))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        answers = []
        try:
            async with aiohttp.ClientSession(headers={"Authorization": "Bearer t0k"}) as session:
                for method, path, body in calls:
                    async with session.request(method, f"http://127.0.0.1:{port}{path}", json=body) as response:
                        answers.append((response.status, await response.json()))
        finally:
            await runner.cleanup()
        return answers

    return asyncio.run(main())


def test_the_handlers_send_the_contract(tmp_path: Path) -> None:
    jm = _jobmaster(tmp_path)
    jm.stats = _stats()
    (s1, health), (s2, job), (s3, checkpoints) = _calls(
        jm, [("GET", "/health", None), ("GET", "/job", None), ("GET", "/checkpoints", None)]
    )
    assert (s1, s2, s3) == (200, 200, 200)
    assert Health.model_validate(health) == Health(state=JobState.CREATED) and health == {
        "status": "ok",
        "state": "CREATED",
    }
    overview = JobOverview.model_validate(job)
    assert overview.state is JobState.CREATED and overview.name == "balance" and overview.to_json() == job
    assert checkpoints == _stats().to_json(0)


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"stop": "yes"}, 400, "stop must be true or false"),
        ({"stop": 1}, 400, "stop must be true or false"),
        ({"target": 5}, 400, "target must be a URI string (file:///path or s3://bucket/prefix)"),
        ({"target": "relative/dir"}, 400, "savepoint target"),
        ({}, 409, "the job is CREATED; savepoints can only be taken while it is RUNNING"),
        ([1, 2], 400, "the body must be a JSON object"),
    ],
)
def test_a_savepoint_request_with_a_bad_body_is_one_error_line(
    tmp_path: Path, body: Any, status: int, message: str
) -> None:
    [(got, answer)] = _calls(_jobmaster(tmp_path), [("POST", "/savepoints", body)])
    assert got == status
    assert message in ErrorBody.model_validate(answer).error


def test_unknown_savepoint_request_is_404(tmp_path: Path) -> None:
    [(status, answer)] = _calls(_jobmaster(tmp_path), [("GET", "/savepoints/nope", None)])
    assert (status, answer) == (404, _recorded("error_404"))


def test_a_checkpoint_entry_of_an_older_jobmaster_without_incremental_size_still_reads() -> None:
    body = _recorded("checkpoints")["history"][0]
    older = {k: v for k, v in body.items() if k != "incremental_size"}
    entry = CheckpointEntry.model_validate(older)
    assert entry.incremental_size is None and entry.size == body["size"]


class _Coordinator:
    """Takes savepoint requests and nothing else (the job's attempt stands still)."""

    def __init__(self) -> None:
        self.requested: list[str] = []

    def request_savepoint(self, request: Any) -> None:
        self.requested.append(request.request_id)


class _Storage:
    def __init__(self) -> None:
        self.dirs = 0

    def new_savepoint_dir(self, target: str | None) -> str:
        self.dirs += 1
        return f"file:///sp/savepoint-{self.dirs}"


def _running_jobmaster(tmp_path: Path) -> tuple[JobMaster, _Coordinator]:
    jm = _jobmaster(tmp_path)
    coordinator = _Coordinator()
    jm._running_coordinator = lambda what: coordinator  # type: ignore[method-assign,assignment,return-value]
    storage = _Storage()
    jm._require_storage = lambda: storage  # type: ignore[method-assign,assignment,return-value]
    return jm, coordinator


def test_the_same_request_key_again_answers_the_first_request_and_takes_one_savepoint(tmp_path: Path) -> None:
    jm, coordinator = _running_jobmaster(tmp_path)
    first = {"stop": True, "request_key": "upgrade-2026-01-02T03:04:05.678Z"}
    (s1, a1), (s2, a2) = _calls(jm, [("POST", "/savepoints", first), ("POST", "/savepoints", first)])
    assert (s1, s2) == (202, 200)  # the retry of a lost answer: the request in progress, not a 409
    one, again = SavepointTriggered.model_validate(a1), SavepointTriggered.model_validate(a2)
    assert again == one and coordinator.requested == [one.request_id]
    request = jm.savepoints.get(one.request_id)
    assert request is not None and request.stop
    request.status, request.location = SavepointStatus.COMPLETED, "file:///sp/savepoint-1"
    # Asked again after it completed (and the job stopped): its result, still no second savepoint.
    (s3, a3), (s4, a4) = _calls(jm, [("POST", "/savepoints", first), ("GET", f"/savepoints/{one.request_id}", None)])
    assert s3 == 200 and SavepointTriggered.model_validate(a3).request_id == one.request_id
    assert s4 == 200 and SavepointView.model_validate(a4).status is SavepointStatus.COMPLETED
    assert coordinator.requested == [one.request_id]


def test_a_different_request_key_while_one_runs_is_the_clear_409(tmp_path: Path) -> None:
    jm, coordinator = _running_jobmaster(tmp_path)
    (s1, _), (s2, a2), (s3, a3) = _calls(
        jm,
        [
            ("POST", "/savepoints", {"stop": True, "request_key": "k1"}),
            ("POST", "/savepoints", {"stop": True, "request_key": "k2"}),
            ("POST", "/savepoints", {"stop": True}),
        ],
    )
    assert (s1, s2, s3) == (202, 409, 409)
    for answer in (a2, a3):
        assert "a savepoint is already in progress" in ErrorBody.model_validate(answer).error
    assert len(coordinator.requested) == 1


@pytest.mark.parametrize("key", ["", 5, "x" * 201])
def test_a_bad_request_key_is_one_error_line(tmp_path: Path, key: Any) -> None:
    [(status, answer)] = _calls(_jobmaster(tmp_path), [("POST", "/savepoints", {"request_key": key})])
    assert status == 400
    assert ErrorBody.model_validate(answer).error == "request_key must be a string of 1 to 200 characters"
