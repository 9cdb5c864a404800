"""The JobMaster's HTTP server: the REST API of docs/architecture.md (the slots talk to ``control.py``'s port).

Used by the operator, the CLI (``streamjob savepoint``) and users; errors are JSON
``{"error": message}`` with 4xx for bad requests and 409 when the job is not in a state that
allows the action. Reading is open; every mutating call needs the job's REST token as a bearer
token (``rest_auth.py``), and a savepoint target must lie under an allowed root
(``savepoint_targets.py``).
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from streamjob.worker.checkpoint.stats import CheckpointRecord, CheckpointStats
from streamjob.worker.errors import StreamJobError
from streamjob.worker.jobmaster.jobmaster import JobMaster
from streamjob.worker.jobmaster.metrics import render_metrics
from streamjob.worker.jobmaster.rescale import InvalidRescale
from streamjob.worker.jobmaster.rest_auth import token_middleware
from streamjob.worker.jobmaster.savepoint_targets import InvalidSavepointTarget, SavepointTargetRefused
from streamjob.worker.protocol.rest import (
    RESCALE_REQUEST_ERRORS,
    SAVEPOINT_REQUEST_ERRORS,
    CancelAccepted,
    CheckpointCounts,
    CheckpointEntry,
    CheckpointKind,
    CheckpointsOverview,
    CheckpointStatus,
    CheckpointSummary,
    CheckpointTriggered,
    ErrorBody,
    Health,
    LatestCheckpoints,
    RescaleRequestBody,
    ResponseBody,
    SavepointRequestBody,
    SavepointTriggered,
)

log = logging.getLogger(__name__)

_JM: web.AppKey[JobMaster] = web.AppKey("jobmaster", JobMaster)


def _respond(body: ResponseBody, status: int = 200) -> web.Response:
    return web.json_response(body.to_json(), status=status)


def _error(status: int, message: str) -> web.Response:
    return _respond(ErrorBody(error=message), status)


def checkpoint_entry(rec: CheckpointRecord) -> CheckpointEntry:
    """One record of the coordinator's statistics as the API shows it."""
    return CheckpointEntry(
        id=rec.id,
        kind=CheckpointKind(rec.kind),
        status=CheckpointStatus(rec.status),
        trigger_ms=rec.trigger_ms,
        duration_ms=rec.duration_ms,
        size=rec.size,
        location=rec.location,
        failure=rec.failure,
        alignment_ms=rec.alignment_ms,
        sync_ms=rec.sync_ms,
        async_ms=rec.async_ms,
        cpu_ms=rec.cpu_ms,
        incremental_size=rec.incremental_size,
    )


def checkpoints_overview(stats: CheckpointStats, in_progress: int) -> CheckpointsOverview:
    """The body of ``GET /checkpoints`` from the JobMaster's statistics."""
    latest, savepoint = stats.latest_completed, stats.latest_savepoint
    return CheckpointsOverview(
        counts=CheckpointCounts(completed=stats.completed, failed=stats.failed, in_progress=in_progress),
        latest=LatestCheckpoints(
            completed=checkpoint_entry(latest) if latest else None,
            savepoint=checkpoint_entry(savepoint) if savepoint else None,
            restored_from=stats.restored_from,
        ),
        summary=CheckpointSummary(duration_ms_p50=stats.percentile(0.5), duration_ms_p99=stats.percentile(0.99)),
        history=tuple(checkpoint_entry(rec) for rec in stats.history),
    )


async def health(request: web.Request) -> web.Response:
    """Liveness: the JobMaster process is serving."""
    return _respond(Health(state=request.app[_JM].state))


async def job(request: web.Request) -> web.Response:
    """Job id, state, parallelism, start time, restore point, attempt."""
    return _respond(request.app[_JM].job_overview())


async def checkpoints(request: web.Request) -> web.Response:
    """Counts, latest and history of checkpoints."""
    jm = request.app[_JM]
    in_progress = len(jm.coordinator.pending) if jm.coordinator else 0
    return _respond(checkpoints_overview(jm.stats, in_progress))


async def trigger_checkpoint(request: web.Request) -> web.Response:
    """Takes a checkpoint now."""
    try:
        cid = request.app[_JM].trigger_checkpoint()
    except StreamJobError as err:
        return _error(409, str(err))
    return _respond(CheckpointTriggered(id=cid), 202)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except json.JSONDecodeError as err:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"the body is not JSON: {err}"}), content_type="application/json"
        ) from err
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "the body must be a JSON object"}), content_type="application/json"
        )
    return data


async def trigger_savepoint(request: web.Request) -> web.Response:
    """Starts a savepoint (``stop: true`` stops the job after it); returns the request id.

    The same ``request_key`` again answers (200) the request it started instead of starting another.
    """
    try:
        body = SavepointRequestBody.model_validate(await _body(request))
    except ValidationError as err:
        field = str(err.errors()[0]["loc"][0])
        return _error(400, SAVEPOINT_REQUEST_ERRORS.get(field, f"{field}: {err.errors()[0]['msg']}"))
    jm = request.app[_JM]
    again = jm.savepoints.by_key(body.request_key) is not None
    try:
        req = jm.trigger_savepoint(body.target, body.stop, body.request_key)
    except InvalidSavepointTarget as err:
        return _error(400, str(err))
    except SavepointTargetRefused as err:
        return _error(403, str(err))
    except StreamJobError as err:
        return _error(409, str(err))
    return _respond(
        SavepointTriggered(request_id=req.id, checkpoint_id=req.checkpoint_id, directory=req.directory),
        200 if again else 202,
    )


async def savepoint_status(request: web.Request) -> web.Response:
    """IN_PROGRESS, COMPLETED (with location) or FAILED (with reason)."""
    req = request.app[_JM].savepoints.get(request.match_info["request_id"])
    if req is None:
        return _error(404, f"no savepoint request {request.match_info['request_id']}")
    return _respond(req.view())


async def rescale(request: web.Request) -> web.Response:
    """Rescales in place (``rescale.py``): stop-with-savepoint, then the next attempt at the new parallelism."""
    try:
        body = RescaleRequestBody.model_validate(await _body(request))
    except ValidationError as err:
        field = str(err.errors()[0]["loc"][0]) if err.errors()[0]["loc"] else "parallelism"
        return _error(400, RESCALE_REQUEST_ERRORS.get(field, f"{field}: {err.errors()[0]['msg']}"))
    try:
        view = request.app[_JM].request_rescale(body.parallelism)
    except InvalidRescale as err:
        return _error(400, str(err))
    except StreamJobError as err:
        return _error(409, str(err))
    return _respond(view, 202)


async def cancel(request: web.Request) -> web.Response:
    """Cancels the job, honouring the externalized checkpoint cleanup."""
    await request.app[_JM].cancel()
    return _respond(CancelAccepted(), 202)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    body, content_type = render_metrics(request.app[_JM])
    return web.Response(body=body, headers={"Content-Type": content_type})


def build_app(jm: JobMaster, *, rest_token: str) -> web.Application:
    """The aiohttp application of a JobMaster; ``rest_token`` is the bearer token mutating calls need."""
    app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[token_middleware(rest_token)])
    app[_JM] = jm
    app.router.add_get("/health", health)
    app.router.add_get("/job", job)
    app.router.add_get("/checkpoints", checkpoints)
    app.router.add_post("/checkpoints", trigger_checkpoint)
    app.router.add_post("/savepoints", trigger_savepoint)
    app.router.add_get("/savepoints/{request_id}", savepoint_status)
    app.router.add_post("/rescale", rescale)
    app.router.add_post("/cancel", cancel)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(
    jm: JobMaster,
    host: str,
    port: int,
    *,
    rest_token: str,
    tls: ssl.SSLContext | None = None,
    sock: socket.socket | None = None,
) -> tuple[web.AppRunner, int]:
    """Starts serving (HTTPS with ``tls``, see ``protocol.tls.rest_server_context``); returns the runner and port.

    ``sock``: a socket already listening (``rest_socket.bind_rest_socket``), used instead of ``host:port``.
    """
    runner = web.AppRunner(build_app(jm, rest_token=rest_token), access_log=None)
    await runner.setup()
    if sock is not None:
        await web.SockSite(runner, sock, ssl_context=tls).start()
        return runner, int(sock.getsockname()[1])
    site = web.TCPSite(runner, host, port, ssl_context=tls)
    try:
        await site.start()
    except OSError as err:
        await runner.cleanup()
        from streamjob.worker.errors import ConfigError

        raise ConfigError(
            f"cannot serve the REST API on {host}:{port} ({err.strerror}); pass --rest-port 0 "
            "for a free port or another port number"
        ) from err
    server: Any = site._server
    bound = port
    if server is not None and getattr(server, "sockets", None):
        bound = int(server.sockets[0].getsockname()[1])
    return runner, bound
