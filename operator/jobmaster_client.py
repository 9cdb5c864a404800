"""The only client of the JobMaster REST API (docs/architecture.md, "REST API"), over aiohttp.

Addresses are ``IP:PORT`` of the JobMaster pod (no cluster DNS needed), or ``https://IP:PORT`` for a
job with ``spec.tls.rest``, verified with the operator's CA file (``operator_rest_tls``). Every call has a short
timeout; connection errors, timeouts, non-2xx answers and bodies that are not the REST contract's models
(``worker/protocol/rest.py``) become ``JobMasterError``. ``JobMasterApi``
is the protocol the controller depends on; tests pass a fake JobMaster. Mutating calls carry the
job's REST token (``derive_rest_token`` of the job's secret) as ``Authorization: Bearer``: one client
serves every job, so the caller passes each job's token with the call.
"""

from __future__ import annotations

import ssl
from typing import Any, Protocol, TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError

from streamjob.operator.errors import JobMasterError
from streamjob.operator.model.jobmaster import JobMasterView, SavepointPoll
from streamjob.operator.settings import REST_CA_FILE_ENV, OperatorConfig
from streamjob.worker.protocol.rest import (
    CancelAccepted,
    CheckpointTriggered,
    JobOverview,
    RescaleView,
    SavepointStatus,
    SavepointTriggered,
    SavepointView,
)
from streamjob.worker.protocol.tls import rest_client_context

B = TypeVar("B", bound=BaseModel)

#: How often ``trigger_savepoint`` asks again (with its request key) when the answer was lost.
SAVEPOINT_RETRIES = 1


def operator_rest_tls(config: OperatorConfig) -> ssl.SSLContext | None:
    """The context verifying jobs' REST certificates against ``STREAMJOB_OPERATOR_REST_CA_FILE``.

    The hostname is not checked: JobMasters are addressed by pod IP, which their certificates do not
    name; trust rests on the CA file, which should be the CA of the jobs' TLS Secrets.
    """
    if not config.rest_ca_file:
        return None
    return rest_client_context(config.rest_ca_file, check_hostname=False, field=REST_CA_FILE_ENV)


class JobMasterApi(Protocol):
    """What the controller needs from a JobMaster."""

    async def job(self, address: str) -> JobMasterView:
        """``GET /job``: reachable or not, and the job state."""
        ...

    async def trigger_savepoint(
        self, address: str, *, stop: bool, rest_token: str | None, target: str | None = None, key: str | None = None
    ) -> str:
        """``POST /savepoints`` → the request id; ``key`` (``request_key``) makes sending it again safe."""
        ...

    async def savepoint_status(self, address: str, request_id: str) -> SavepointPoll:
        """``GET /savepoints/<id>``."""
        ...

    async def trigger_checkpoint(self, address: str, *, rest_token: str | None) -> None:
        """``POST /checkpoints``."""
        ...

    async def cancel(self, address: str, *, rest_token: str | None) -> None:
        """``POST /cancel``."""
        ...

    async def rescale(self, address: str, parallelism: int, *, rest_token: str | None) -> RescaleView:
        """``POST /rescale``: rescale in place through a stop-with-savepoint."""
        ...


class JobMasterClient:
    """``JobMasterApi`` over one shared aiohttp session."""

    def __init__(
        self, session: aiohttp.ClientSession, *, timeout_s: float = 3.0, tls: ssl.SSLContext | None = None
    ) -> None:
        """The session is owned by the caller (closed on operator shutdown); ``tls`` verifies https JobMasters."""
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._tls = tls

    async def _request(
        self, method: str, address: str, path: str, body: dict[str, Any] | None = None, *, rest_token: str | None = None
    ) -> Any:
        url = f"{address}{path}" if "://" in address else f"http://{address}{path}"
        headers = {"Authorization": f"Bearer {rest_token}"} if rest_token else None
        verify: ssl.SSLContext | bool = True
        if url.startswith("https://"):
            verify = self._tls if self._tls is not None else True  # without a CA file: the system CAs
        try:
            async with self._session.request(
                method, url, json=body, headers=headers, ssl=verify, timeout=self._timeout
            ) as response:
                text = await response.text()
                if response.status >= 400:
                    raise JobMasterError(f"{method} {url}: HTTP {response.status} {text[:300]}", status=response.status)
                return await response.json(content_type=None) if text.strip() else {}
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            raise JobMasterError(f"{method} {url}: {err or type(err).__name__}") from err

    async def _call(
        self, model: type[B], method: str, address: str, path: str, body: dict[str, Any] | None = None, **kw: Any
    ) -> B:
        data = await self._request(method, address, path, body, **kw)
        try:
            return model.model_validate(data)
        except ValidationError as err:
            raise _not_the_contract(model, f"{method} {path} on {address}", err) from None

    async def job(self, address: str) -> JobMasterView:
        """See ``JobMasterApi``; an unreachable JobMaster (or one answering nonsense) is a view, not an error.

        A malformed ``failure_detail`` alone is dropped: it is not worth failing the round for, the
        pods still say why.
        """
        try:
            data = await self._request("GET", address, "/job")
            try:
                overview = JobOverview.model_validate(data)
            except ValidationError as err:
                if not isinstance(data, dict) or any(e["loc"][:1] != ("failure_detail",) for e in err.errors()):
                    raise _not_the_contract(JobOverview, f"GET /job on {address}", err) from None
                overview = JobOverview.model_validate({**data, "failure_detail": None})
        except JobMasterError as err:
            return JobMasterView(reachable=False, error=str(err))
        return JobMasterView(
            reachable=True,
            state=overview.state,
            failure=overview.failure,
            detail=overview.failure_detail,
            parallelism=overview.parallelism,
            registered_slots=len(overview.workers) + overview.spare_slots,
            spare_slots=overview.spare_slots,
            rescale=overview.rescale,
            restarts=overview.restarts,
        )

    async def trigger_savepoint(
        self, address: str, *, stop: bool, rest_token: str | None, target: str | None = None, key: str | None = None
    ) -> str:
        """See ``JobMasterApi``.

        With a ``key``, an answer lost on the way (a timeout, a dropped connection: no HTTP status) is
        asked for again ``SAVEPOINT_RETRIES`` times with the same key: the JobMaster answers the request
        the first call started. Without one, a retry could start a second savepoint: no retry.
        """
        body: dict[str, Any] = {"stop": stop}
        if target is not None:
            body["target"] = target
        if key is not None:
            body["request_key"] = key
        for retry in range(SAVEPOINT_RETRIES + 1 if key is not None else 1):
            try:
                triggered = await self._call(
                    SavepointTriggered, "POST", address, "/savepoints", body, rest_token=rest_token
                )
                break
            except JobMasterError as err:
                if err.status is not None or retry == SAVEPOINT_RETRIES or key is None:
                    raise
        if not triggered.request_id:
            raise JobMasterError(f"POST /savepoints on {address} answered an empty request_id")
        return triggered.request_id

    async def savepoint_status(self, address: str, request_id: str) -> SavepointPoll:
        """See ``JobMasterApi``; an unknown request id (404) is UNKNOWN."""
        try:
            view = await self._call(SavepointView, "GET", address, f"/savepoints/{request_id}")
        except JobMasterError as err:
            if err.status == 404:
                return SavepointPoll("UNKNOWN", reason=str(err))
            raise
        if view.status is SavepointStatus.COMPLETED:
            return SavepointPoll("COMPLETED", location=view.location)
        if view.status is SavepointStatus.FAILED:
            return SavepointPoll("FAILED", reason=view.reason)
        return SavepointPoll("IN_PROGRESS")

    async def trigger_checkpoint(self, address: str, *, rest_token: str | None) -> None:
        """See ``JobMasterApi``."""
        await self._call(CheckpointTriggered, "POST", address, "/checkpoints", {}, rest_token=rest_token)

    async def cancel(self, address: str, *, rest_token: str | None) -> None:
        """See ``JobMasterApi``."""
        await self._call(CancelAccepted, "POST", address, "/cancel", {}, rest_token=rest_token)

    async def rescale(self, address: str, parallelism: int, *, rest_token: str | None) -> RescaleView:
        """See ``JobMasterApi``."""
        body = {"parallelism": parallelism}
        return await self._call(RescaleView, "POST", address, "/rescale", body, rest_token=rest_token)


def _not_the_contract(model: type[BaseModel], call: str, err: ValidationError) -> JobMasterError:
    """One line naming the model and the first bad field of an answer that is not the REST contract."""
    errors = err.errors()
    where = ".".join(str(part) for part in errors[0]["loc"]) or "(body)"
    more = f" and {len(errors) - 1} more" if len(errors) > 1 else ""
    return JobMasterError(
        f"{call} answered a body that is not a {model.__name__} ({where}: {errors[0]['msg']}{more}); "
        "is it a streamjob JobMaster of a compatible version?"
    )
