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
import ssl
from typing import Any

from aiohttp import web

from streamjob.worker.errors import StreamJobError
from streamjob.worker.jobmaster.jobmaster import JobMaster
from streamjob.worker.jobmaster.metrics import render_metrics
from streamjob.worker.jobmaster.rest_auth import token_middleware
from streamjob.worker.jobmaster.savepoint_targets import InvalidSavepointTarget, SavepointTargetRefused

log = logging.getLogger(__name__)

_JM: web.AppKey[JobMaster] = web.AppKey("jobmaster", JobMaster)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def health(request: web.Request) -> web.Response:
    """Liveness: the JobMaster process is serving."""
    jm = request.app[_JM]
    return web.json_response({"status": "ok", "state": jm.state})


async def job(request: web.Request) -> web.Response:
    """Job id, state, parallelism, start time, restore point, attempt."""
    return web.json_response(request.app[_JM].job_json())


async def checkpoints(request: web.Request) -> web.Response:
    """Counts, latest and history of checkpoints."""
    jm = request.app[_JM]
    in_progress = len(jm.coordinator.pending) if jm.coordinator else 0
    return web.json_response(jm.stats.to_json(in_progress))


async def trigger_checkpoint(request: web.Request) -> web.Response:
    """Takes a checkpoint now."""
    try:
        cid = request.app[_JM].trigger_checkpoint()
    except StreamJobError as err:
        return _error(409, str(err))
    return web.json_response({"id": cid}, status=202)


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
    """Starts a savepoint (``stop: true`` stops the job after it); returns the request id."""
    body = await _body(request)
    target = body.get("target")
    stop = body.get("stop", False)
    if target is not None and not isinstance(target, str):
        return _error(400, "target must be a URI string (file:///path or s3://bucket/prefix)")
    if not isinstance(stop, bool):
        return _error(400, "stop must be true or false")
    try:
        req = request.app[_JM].trigger_savepoint(target, stop)
    except InvalidSavepointTarget as err:
        return _error(400, str(err))
    except SavepointTargetRefused as err:
        return _error(403, str(err))
    except StreamJobError as err:
        return _error(409, str(err))
    return web.json_response(
        {"request_id": req.id, "checkpoint_id": req.checkpoint_id, "directory": req.directory}, status=202
    )


async def savepoint_status(request: web.Request) -> web.Response:
    """IN_PROGRESS, COMPLETED (with location) or FAILED (with reason)."""
    req = request.app[_JM].savepoints.get(request.match_info["request_id"])
    if req is None:
        return _error(404, f"no savepoint request {request.match_info['request_id']}")
    return web.json_response(
        {
            "request_id": req.id,
            "status": req.status,
            "location": req.location,
            "reason": req.reason,
            "checkpoint_id": req.checkpoint_id,
            "stop": req.stop,
        }
    )


async def cancel(request: web.Request) -> web.Response:
    """Cancels the job, honouring the externalized checkpoint cleanup."""
    await request.app[_JM].cancel()
    return web.json_response({"state": "CANCELLING"}, status=202)


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
    app.router.add_post("/cancel", cancel)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(
    jm: JobMaster, host: str, port: int, *, rest_token: str, tls: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    """Starts serving (HTTPS with ``tls``, see ``protocol.tls.rest_server_context``); returns the runner and port."""
    runner = web.AppRunner(build_app(jm, rest_token=rest_token), access_log=None)
    await runner.setup()
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
