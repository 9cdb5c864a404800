"""The JobMaster REST API's bodies, declared once: the contract of docs/architecture.md, "REST API".

The JobMaster's handlers (``jobmaster/rest.py``) build these models and send ``model_dump(mode="json")``;
every client parses what it gets with ``model_validate``: the CLI (``rest_client.py``, ``cli.py``), the
operator (``operator/jobmaster_client.py``) and the test kit (``testing``). The wire format is the one the
API always had (snake_case keys, ``null`` for absent values), so clients written against the JSON keep
working. Clients ignore keys they do not know (a newer JobMaster may add some); a missing key or a value
of the wrong type is a ``pydantic.ValidationError``, which each client turns into its own one-line error.

``JobState`` replaces the state strings on both sides: the JobMaster's lifecycle, the Prometheus gauge and
the operator's planner read the same enum.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class JobState(StrEnum):
    """Where a job is in its life, as ``GET /job`` and ``GET /health`` report it (Flink's names)."""

    CREATED = "CREATED"
    DEPLOYING = "DEPLOYING"
    RUNNING = "RUNNING"
    RECOVERING = "RECOVERING"
    """Deploying again after a failure (local mode's restart in place)."""
    RESTARTING = "RESTARTING"
    """Waiting out the restart strategy's delay before the next attempt."""
    FINISHED = "FINISHED"
    CANCELED = "CANCELED"
    FAILED = "FAILED"

    @classmethod
    def _missing_(cls, value: object) -> JobState | None:
        """Accepts any case and the British ``CANCELLED`` (older JobMasters and hand-written fakes)."""
        if not isinstance(value, str):
            return None
        text = value.strip().upper()
        text = "CANCELED" if text == "CANCELLED" else text
        return cls.__members__.get(text)

    @property
    def ended(self) -> bool:
        """FINISHED, CANCELED or FAILED: no attempt of the job will run again in this JobMaster."""
        return self in ENDED_STATES

    @property
    def starting(self) -> bool:
        """Between the JobMaster's start (or a restart) and every task running."""
        return self in (JobState.CREATED, JobState.DEPLOYING, JobState.RECOVERING, JobState.RESTARTING)


ENDED_STATES = frozenset({JobState.FINISHED, JobState.CANCELED, JobState.FAILED})
"""The terminal states."""


class CheckpointKind(StrEnum):
    """What a checkpoint was taken for."""

    CHECKPOINT = "checkpoint"
    SAVEPOINT = "savepoint"


class CheckpointStatus(StrEnum):
    """How a checkpoint in the history ended."""

    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class SavepointStatus(StrEnum):
    """Where a ``POST /savepoints`` request is."""

    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class ResponseBody(BaseModel):
    """A response body: immutable; unknown keys are ignored so that older clients read newer JobMasters."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    def to_json(self) -> dict[str, object]:
        """The JSON object sent on the wire."""
        return self.model_dump(mode="json")


class ErrorBody(ResponseBody):
    """Every 4xx/5xx: ``{"error": message}`` (one line naming the problem and the fix)."""

    error: str


class Health(ResponseBody):
    """``GET /health``: the process serves, and the job's state."""

    status: Literal["ok"] = "ok"
    state: JobState


class VertexView(ResponseBody):
    """One vertex of the job graph in ``GET /job``."""

    id: str
    name: str
    parallelism: int
    slot_group: str = "default"
    """Its slot sharing group (``DataStream.slot_sharing_group``; older JobMasters omit it)."""


class WorkerView(ResponseBody):
    """One registered worker slot in ``GET /job``; ``address`` is its data plane's ``[host, port]``."""

    slot: int
    pid: int
    address: tuple[str, int]


class RescaleStatus(StrEnum):
    """Where a ``POST /rescale`` is."""

    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class RescaleView(ResponseBody):
    """A rescale in place (``POST /rescale``, and ``GET /job``'s ``rescale``): from, to, through which savepoint.

    ``savepoint`` is the stop-with-savepoint's directory once it completed; ``gap_ms`` the time from the
    request to the new attempt's tasks running (a bound on the processing gap), None until it runs.
    """

    status: RescaleStatus
    source: int
    """The parallelism before."""
    target: int
    savepoint: str | None = None
    reason: str | None = None
    """Why it failed (the job keeps running at ``source`` unless its state says otherwise)."""
    requested_at: float
    """Seconds since the epoch."""
    gap_ms: int | None = None


class FailureDetail(ResponseBody):
    """The root cause of the last failed attempt in ``GET /job``: what raised, where, and the traceback's end.

    ``task`` is "vertex (subtask)" for a task's failure, else None; ``traceback`` holds the innermost
    lines, the exception's last. Absent (``failure_detail: null``) until an attempt failed.
    """

    exception: str
    message: str
    task: str | None = None
    operator_uid: str | None = None
    traceback: tuple[str, ...] = ()
    attempt: int = 0


class JobOverview(ResponseBody):
    """``GET /job``: identity, state, shape and progress of the job."""

    id: str
    name: str
    namespace: str
    state: JobState
    parallelism: int
    """The largest operator parallelism (what ``POST /rescale`` sets)."""
    max_parallelism: int
    slots: int | None = None
    """Slots the job needs: per slot sharing group its largest parallelism, summed (older JobMasters omit it)."""
    start_time: float
    """Seconds since the epoch when the JobMaster started."""
    restored_from: str | None
    attempt: int
    restarts: int
    failure: str | None
    """Why the last attempt failed (kept while the next one runs)."""
    failure_detail: FailureDetail | None = None
    """The same failure's root cause, structured (added later: older JobMasters omit it)."""
    rescale: RescaleView | None = None
    """The last ``POST /rescale`` of this JobMaster and where it is (None: never rescaled; older JobMasters omit it)."""
    vertices: tuple[VertexView, ...]
    workers: tuple[WorkerView, ...]
    spare_slots: int = 0
    """Slots registered beyond the attempt's (idle until a rescale up needs them)."""
    records_in: int
    """Records the sources read in this attempt."""
    control_address: str
    checkpoints_uri: str
    savepoints_uri: str | None


class CheckpointEntry(ResponseBody):
    """One finished (or failed) checkpoint in ``GET /checkpoints``; durations in ms, sizes in bytes.

    ``size`` is the full state the checkpoint references; ``incremental_size`` what it wrote (less
    than ``size`` with incremental checkpoints; None for a failed one or when not known).
    """

    id: int
    kind: CheckpointKind
    status: CheckpointStatus
    trigger_ms: int
    duration_ms: int
    size: int = 0
    location: str | None = None
    failure: str | None = None
    alignment_ms: float = 0.0
    sync_ms: float = 0.0
    async_ms: float = 0.0
    cpu_ms: float = 0.0
    """CPU time the tasks spent on checkpoint work since their previous acknowledgement, summed over tasks."""
    incremental_size: int | None = None


class CheckpointCounts(ResponseBody):
    """Checkpoints completed and failed since the JobMaster started, and in progress now."""

    completed: int
    failed: int
    in_progress: int


class LatestCheckpoints(ResponseBody):
    """The newest completed checkpoint and savepoint, and what the current attempt restored."""

    completed: CheckpointEntry | None
    savepoint: CheckpointEntry | None
    restored_from: str | None


class CheckpointSummary(ResponseBody):
    """Duration percentiles of the completed checkpoints (``None`` before the first)."""

    duration_ms_p50: float | None
    duration_ms_p99: float | None


class CheckpointsOverview(ResponseBody):
    """``GET /checkpoints``: counts, latest, summary and the history, newest first."""

    counts: CheckpointCounts
    latest: LatestCheckpoints
    summary: CheckpointSummary
    history: tuple[CheckpointEntry, ...]


class CheckpointTriggered(ResponseBody):
    """``POST /checkpoints`` (202): the id of the checkpoint just triggered."""

    id: int


class SavepointRequestBody(BaseModel):
    """The body of ``POST /savepoints``: ``target`` (a parent directory URI) and ``stop`` (stop-with-savepoint).

    ``request_key`` makes the request idempotent: sent again with the same key (a retry after a lost
    answer), it answers the request that key started (in progress or ended) instead of starting a
    second savepoint or refusing with "already in progress".
    """

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    target: str | None = None
    stop: bool = False
    request_key: str | None = Field(default=None, min_length=1, max_length=200)


SAVEPOINT_REQUEST_ERRORS = {
    "target": "target must be a URI string (file:///path or s3://bucket/prefix)",
    "stop": "stop must be true or false",
    "request_key": "request_key must be a string of 1 to 200 characters",
}
"""The 400 message for a bad field of ``SavepointRequestBody``."""


class RescaleRequestBody(BaseModel):
    """The body of ``POST /rescale``: the new parallelism (1 ≤ parallelism ≤ the job's max parallelism)."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    parallelism: int


RESCALE_REQUEST_ERRORS = {
    "parallelism": 'parallelism must be a whole number, e.g. {"parallelism": 3}',
}
"""The 400 message for a bad field of ``RescaleRequestBody``."""


class SavepointTriggered(ResponseBody):
    """``POST /savepoints`` (202): the request id to poll, and the savepoint's id and directory.

    200 instead when its ``request_key`` started a request before: that request's id, in progress or ended.

    ``checkpoint_id`` is ``None`` while the savepoint waits for a checkpoint in progress to end.
    """

    request_id: str
    checkpoint_id: int | None
    directory: str | None


class SavepointView(ResponseBody):
    """``GET /savepoints/<request_id>``: IN_PROGRESS, COMPLETED (``location``) or FAILED (``reason``)."""

    request_id: str
    status: SavepointStatus
    location: str | None
    reason: str | None
    checkpoint_id: int | None
    stop: bool


class CancelAccepted(ResponseBody):
    """``POST /cancel`` (202): the job is being cancelled."""

    state: Literal["CANCELLING"] = "CANCELLING"
