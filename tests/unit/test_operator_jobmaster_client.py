"""The JobMaster REST client against an in-process aiohttp app on 127.0.0.1 speaking design.md's API.

The app checks bearer tokens with the JobMaster's own middleware, so the client is tested against the
real check.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from streamjob.operator.errors import JobMasterError
from streamjob.operator.jobmaster_client import JobMasterClient
from streamjob.worker.jobmaster.rest_auth import token_middleware
from streamjob.worker.protocol.auth import derive_rest_token, new_job_secret
from streamjob.worker.protocol.rest import JobState

pytestmark = pytest.mark.unit

TOKEN = derive_rest_token(new_job_secret())
RECORDED = Path(__file__).parent / "rest_responses"


def recorded(name: str, **changes: Any) -> dict[str, Any]:
    """A body a real JobMaster answered (``rest_responses/``), with ``changes``."""
    body: dict[str, Any] = json.loads((RECORDED / f"{name}.json").read_text())
    return {**body, **changes}


def app(calls: list[tuple[str, Any]]) -> web.Application:
    async def job(_: web.Request) -> web.Response:
        return web.json_response(recorded("job_running", state="running"))

    async def savepoints(request: web.Request) -> web.Response:
        calls.append(("savepoint", await request.json()))
        return web.json_response(recorded("savepoint_triggered", request_id="sp-1"))

    async def savepoint(request: web.Request) -> web.Response:
        rid = request.match_info["rid"]
        if rid == "sp-1":
            return web.json_response(recorded("savepoint_completed", location="s3://b/sp/savepoint-1"))
        if rid == "bad":
            return web.json_response(
                recorded("savepoint_completed", status="FAILED", location=None, reason="task gone")
            )
        if rid == "garbled":
            return web.json_response(recorded("savepoint_completed", status="DONE"))
        return web.json_response({"error": "unknown"}, status=404)

    async def checkpoints(_: web.Request) -> web.Response:
        calls.append(("checkpoint", None))
        return web.json_response(recorded("checkpoint_triggered"))

    async def cancel(_: web.Request) -> web.Response:
        return web.json_response({"error": "boom"}, status=500)

    application = web.Application(middlewares=[token_middleware(TOKEN)])
    application.add_routes(
        [
            web.get("/job", job),
            web.post("/savepoints", savepoints),
            web.get("/savepoints/{rid}", savepoint),
            web.post("/checkpoints", checkpoints),
            web.post("/cancel", cancel),
        ]
    )
    return application


def serve(
    test: Callable[[JobMasterClient, str], Awaitable[None]],
    calls: list[tuple[str, Any]],
    *,
    application: web.Application | None = None,
    timeout_s: float = 2,
) -> None:
    """Runs ``test`` with a client of a JobMaster served on a free port (``app(calls)`` unless given)."""

    async def main() -> None:
        runner = web.AppRunner(application if application is not None else app(calls))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession() as session:
                await test(JobMasterClient(session, timeout_s=timeout_s), f"127.0.0.1:{port}")
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_rest_api_round_trip() -> None:
    calls: list[tuple[str, Any]] = []

    async def check(client: JobMasterClient, address: str) -> None:
        view = await client.job(address)
        assert view.reachable and view.state == "RUNNING"
        assert await client.trigger_savepoint(address, stop=True, rest_token=TOKEN) == "sp-1"
        done = await client.savepoint_status(address, "sp-1")
        assert (done.status, done.location) == ("COMPLETED", "s3://b/sp/savepoint-1")
        failed = await client.savepoint_status(address, "bad")
        assert (failed.status, failed.reason) == ("FAILED", "task gone")
        assert (await client.savepoint_status(address, "zzz")).status == "UNKNOWN"
        await client.trigger_checkpoint(address, rest_token=TOKEN)
        with pytest.raises(JobMasterError, match="HTTP 500"):
            await client.cancel(address, rest_token=TOKEN)

    serve(check, calls)
    assert calls == [("savepoint", {"stop": True}), ("checkpoint", None)]


def test_unreachable_jobmaster_is_a_fact_not_an_error() -> None:
    async def check() -> None:
        async with aiohttp.ClientSession() as session:
            client = JobMasterClient(session, timeout_s=0.5)
            view = await client.job("127.0.0.1:1")
            assert not view.reachable and view.error
            with pytest.raises(JobMasterError):
                await client.trigger_checkpoint("127.0.0.1:1", rest_token=TOKEN)

    asyncio.run(check())


@pytest.mark.parametrize(
    "token, status",
    [(None, 401), ("0" * 64, 403), (TOKEN[:-1], 403)],
    ids=["no-token", "a-wrong-token", "the-token-cut-short"],  # the same ids in every process (pytest-xdist)
)
def test_mutating_calls_without_the_jobs_token_are_refused(token: str | None, status: int) -> None:
    calls: list[tuple[str, Any]] = []

    async def check(client: JobMasterClient, address: str) -> None:
        assert (await client.job(address)).reachable  # reading needs no token
        for call in (
            client.trigger_savepoint(address, stop=False, rest_token=token),
            client.trigger_checkpoint(address, rest_token=token),
            client.cancel(address, rest_token=token),
        ):
            with pytest.raises(JobMasterError) as refused:
                await call
            assert refused.value.status == status

    serve(check, calls)
    assert calls == []


def test_a_body_that_is_not_the_contract_is_one_error_naming_the_field() -> None:
    async def job(_: web.Request) -> web.Response:
        return web.json_response({k: v for k, v in recorded("job_running").items() if k != "state"})

    async def main() -> None:
        application = web.Application()
        application.router.add_get("/job", job)
        application.router.add_get("/savepoints/{rid}", job)
        runner = web.AppRunner(application)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        address = f"127.0.0.1:{runner.addresses[0][1]}"
        try:
            async with aiohttp.ClientSession() as session:
                client = JobMasterClient(session, timeout_s=2)
                view = await client.job(address)
                assert not view.reachable and view.error is not None
                assert "not a JobOverview (state: Field required)" in view.error, view.error
                with pytest.raises(
                    JobMasterError, match=r"not a SavepointView \(request_id: Field required and \d+ more\)"
                ):
                    await client.savepoint_status(address, "sp-1")
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_a_savepoint_status_the_contract_does_not_know_is_an_error() -> None:
    async def check(client: JobMasterClient, address: str) -> None:
        with pytest.raises(JobMasterError, match=r"not a SavepointView \(status: "):
            await client.savepoint_status(address, "garbled")

    serve(check, [])


def test_a_malformed_failure_detail_alone_is_dropped_not_the_round() -> None:
    async def job(_: web.Request) -> web.Response:
        body = recorded("job_restarted", state="FAILED", failure_detail={"exception": 3})
        return web.json_response(body)

    async def main() -> None:
        application = web.Application()
        application.router.add_get("/job", job)
        runner = web.AppRunner(application)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            async with aiohttp.ClientSession() as session:
                view = await JobMasterClient(session, timeout_s=2).job(f"127.0.0.1:{runner.addresses[0][1]}")
        finally:
            await runner.cleanup()
        assert view.reachable and view.state is JobState.FAILED and view.detail is None
        assert view.failure is not None and "was lost" in view.failure

    asyncio.run(main())


def test_a_lost_savepoint_answer_is_asked_again_with_the_same_request_key() -> None:
    bodies: list[Any] = []

    async def savepoints(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        if len(bodies) == 1:
            await asyncio.sleep(1.0)  # the stop runs; its answer does not arrive within the client's timeout
        return web.json_response(recorded("savepoint_triggered", request_id="sp-1"))

    async def check(client: JobMasterClient, address: str) -> None:
        got = await client.trigger_savepoint(address, stop=True, rest_token=TOKEN, key="uid:upgrade:t0")
        assert got == "sp-1"
        assert bodies == [{"stop": True, "request_key": "uid:upgrade:t0"}] * 2
        bodies.clear()
        with pytest.raises(JobMasterError):  # without a key a retry could start a second savepoint
            await client.trigger_savepoint(address, stop=True, rest_token=TOKEN)
        assert bodies == [{"stop": True}]

    application = web.Application(middlewares=[token_middleware(TOKEN)])
    application.add_routes([web.post("/savepoints", savepoints)])
    serve(check, [], application=application, timeout_s=0.3)
