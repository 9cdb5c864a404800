"""Every message of the internal planes, declared once, with its one codec (msgpack).

The control channel (slot ↔ JobMaster) and the data plane (slot ↔ slot) exchange the typed
messages below; ``encode`` and ``decode`` are the only way any of them becomes bytes or comes back.
Every model is strict and closed: an unknown kind (``t``), a missing field, an extra field or a
value of the wrong type (``"1"`` for an int, ``true`` for an int) is a ``ProtocolError`` whose
message fits one log line, never a traceback. Nothing here names code to run: the payloads are
plain values, state handles and the job's configuration. Record batches are not messages: they are
the DATA frames' payload, encoded by ``runtime.codec.RecordCodec``; their frame header is declared
in ``framing``.

Used by ``handshake`` (Challenge, Hello, Welcome), the JobMaster (``jobmaster/control.py``,
``jobmaster/slots.py``, ``jobmaster/jobmaster.py``), the slot (``slot.py``), the tasks
(``runtime/subtask_checkpointer.py``: acks, declines; ``runtime/task.py``: end of input) and the
data plane (``runtime/network.py``: events).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgpack
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_serializer

from streamjob.worker.config import CheckpointSettings, JobConfig
from streamjob.worker.errors import StreamJobError
from streamjob.worker.protocol.events import END_OF_STREAM, Barrier, StreamEvent, Watermark, WatermarkStatus
from streamjob.worker.snapshot.handles import StateHandle

PROTOCOL_VERSION = 2
"""Both planes' version, exchanged in the handshake: peers of different versions refuse each other."""


class ProtocolError(StreamJobError):
    """A peer sent bytes that are not a valid message of this protocol (one line, no traceback)."""


class _Message(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# -- handshake (both planes) ----------------------------------------------------------------------
class Challenge(_Message):
    """Server → client, first thing on every connection: prove you know the job's secret."""

    t: Literal["challenge"] = "challenge"
    version: int
    nonce: bytes


class Hello(_Message):
    """Client → server: the proof for the server's nonce and the client's own nonce for the server.

    On the data plane ``attempt`` and ``token`` name the job attempt the producer belongs to; both
    are bound into the proof, so a process of an older attempt is refused even though it knows the
    secret. On the control channel both keep their defaults.
    """

    t: Literal["hello"] = "hello"
    version: int
    nonce: bytes
    proof: bytes
    attempt: int = 0
    token: str = ""


class Welcome(_Message):
    """Server → client: the server's proof for the client's nonce; the connection is authenticated."""

    t: Literal["welcome"] = "welcome"
    proof: bytes


# -- barriers: one encoding for the trigger and for the data plane --------------------------------
class BarrierSpec(_Message):
    """A ``Barrier`` on the wire."""

    id: int
    timestamp_ms: int
    savepoint_dir: str | None = None
    stop: bool = False
    unaligned: bool = False

    @classmethod
    def of(cls, barrier: Barrier) -> BarrierSpec:
        """The wire form of a barrier."""
        return cls(
            id=barrier.id,
            timestamp_ms=barrier.timestamp_ms,
            savepoint_dir=barrier.savepoint_dir,
            stop=barrier.stop,
            unaligned=barrier.unaligned,
        )

    def to_barrier(self) -> Barrier:
        """The runtime's barrier."""
        return Barrier(self.id, self.timestamp_ms, self.savepoint_dir, self.stop, self.unaligned)


class BarrierEvent(_Message):
    """A barrier in a channel (data plane EVENT frame)."""

    t: Literal["barrier"] = "barrier"
    barrier: BarrierSpec


class EndOfStreamEvent(_Message):
    """The end of a channel (data plane EVENT frame)."""

    t: Literal["end_of_stream"] = "end_of_stream"


class WatermarkEvent(_Message):
    """A watermark in a channel (data plane EVENT frame)."""

    t: Literal["watermark"] = "watermark"
    timestamp_ms: int


class WatermarkStatusEvent(_Message):
    """The channel's producer became idle or active (data plane EVENT frame)."""

    t: Literal["watermark_status"] = "watermark_status"
    idle: bool


# -- JobMaster → slot -----------------------------------------------------------------------------
class SlotAddress(_Message):
    """Where one slot of the attempt accepts data connections."""

    slot: int
    host: str
    port: int


class SubtaskRestore(_Message):
    """What one subtask reads on restore (``checkpoint.restore.SubtaskRestorePlan`` on the wire)."""

    keyed: dict[str, list[StateHandle]] = Field(default_factory=dict)
    operator: dict[str, list[list[StateHandle]]] = Field(default_factory=dict)
    in_flight: list[StateHandle] = Field(default_factory=list)
    filter_in_flight_by_key: bool = False


class Deploy(_Message):
    """Prepare this slot's tasks of ``attempt``: load the job, build the tasks, accept the attempt's peers."""

    t: Literal["deploy"] = "deploy"
    attempt: int
    job_id: str
    token: str
    config: JobConfig
    settings: CheckpointSettings
    backend: str
    incremental: bool
    batch_size: int
    fingerprint: str
    slot_index: int
    slots: list[SlotAddress]
    checkpoints_uri: str
    savepoints_uri: str | None
    restore_base: str | None
    restore: dict[str, SubtaskRestore]
    """Per ``vertex/subtask`` of this slot."""

    @field_serializer("config", "settings")
    def _as_json(self, value: JobConfig | CheckpointSettings) -> dict[str, Any]:
        return value.model_dump(mode="json")


class Start(_Message):
    """Every slot prepared: connect to the peers and run the tasks."""

    t: Literal["start"] = "start"


class Trigger(_Message):
    """Sources inject this barrier."""

    t: Literal["trigger"] = "trigger"
    barrier: BarrierSpec


class Notify(_Message):
    """Checkpoint ``cp`` completed (two-phase-commit sinks commit)."""

    t: Literal["notify"] = "notify"
    cp: int


class Abort(_Message):
    """Checkpoint ``cp`` was aborted."""

    t: Literal["abort"] = "abort"
    cp: int


class Finish(_Message):
    """The final checkpoint completed: finish the tasks.

    ``stay``: a rescale in place; the slot keeps its connection after its tasks ended and takes the
    next deployment (after ``release``) instead of exiting.
    """

    t: Literal["finish"] = "finish"
    stay: bool = False


class Cancel(_Message):
    """The job is cancelled: stop the tasks."""

    t: Literal["cancel"] = "cancel"


class Release(_Message):
    """The attempt failed but this slot stays: stop its tasks, drop the attempt's connections, answer ``released``.

    The JobMaster then deploys the next attempt to it (Flink's task cancellation on failover: the
    TaskManager survives, only its tasks end).
    """

    t: Literal["release"] = "release"
    attempt: int


class Bye(_Message):
    """The attempt ended; the slot exits (non-zero when it failed)."""

    t: Literal["bye"] = "bye"
    outcome: Literal["finished", "cancelled", "failed"]


class Ping(_Message):
    """The JobMaster is alive (a slot that hears nothing for the heartbeat timeout gives up)."""

    t: Literal["ping"] = "ping"


# -- slot → JobMaster ------------------------------------------------------------------------------
class Register(_Message):
    """The first message of an authenticated slot: where it accepts data connections."""

    t: Literal["register"] = "register"
    data_host: str
    data_port: int = Field(ge=1, le=65535)
    pid: int


class Prepared(_Message):
    """The slot prepared its tasks of the attempt."""

    t: Literal["prepared"] = "prepared"
    tasks: int


class Released(_Message):
    """The slot's tasks of ``attempt`` ended and its connections of that attempt are closed: it takes a deployment."""

    t: Literal["released"] = "released"
    attempt: int


class Ack(_Message):
    """A task's snapshot for checkpoint ``cp``, with its record counts as of the barrier."""

    t: Literal["ack"] = "ack"
    cp: int
    vertex: str
    subtask: int
    states: dict[str, dict[str, list[StateHandle]]]
    stats: dict[str, float]
    positions: list[Any]
    records_in: int
    records_out: int


class Decline(_Message):
    """A task cannot take checkpoint ``cp`` (``subsumed``: a newer one overtook it there)."""

    t: Literal["decline"] = "decline"
    cp: int
    vertex: str
    subtask: int
    reason: str
    subsumed: bool = False


class TaskFailed(_Message):
    """A task failed (``corrupt_restore``: its restore point's files are damaged)."""

    t: Literal["task_failed"] = "task_failed"
    vertex: str
    subtask: int
    error: str
    corrupt_restore: bool = False
    failure_class: str | None = Field(default=None, max_length=64)
    """Why no restart can mend it (``failures.FailureClass``), or None."""
    exception: str | None = Field(default=None, max_length=200)
    """The exception's type name (``failures.describe``)."""
    operator_uid: str | None = Field(default=None, max_length=200)
    """The uid of the operator whose code raised, when known."""
    traceback: list[str] = Field(default_factory=list, max_length=40)
    """The innermost traceback lines, ending with the exception's."""


class SlotFailed(_Message):
    """The slot itself failed (deployment, a lost data connection)."""

    t: Literal["slot_failed"] = "slot_failed"
    error: str
    corrupt_restore: bool = False
    failure_class: str | None = Field(default=None, max_length=64)
    """Why no restart can mend it (``failures.FailureClass``), or None."""


class EndOfInput(_Message):
    """A source task read all its input."""

    t: Literal["end_of_input"] = "end_of_input"
    vertex: str
    subtask: int
    records_in: int
    records_out: int


class SlotFinished(_Message):
    """Every task of the slot ended."""

    t: Literal["slot_finished"] = "slot_finished"


class UserMetric(_Message):
    """One user metric of a task (``api/metrics.py``): its kind, group labels and current values."""

    name: str
    kind: Literal["counter", "gauge", "meter", "histogram"]
    labels: dict[str, str]
    values: dict[str, float]


class TaskCounters(_Message):
    """One task's counters in a ``Metrics`` report."""

    vertex: str
    subtask: int
    records_in: int
    records_out: int
    backpressured_s: float
    user: list[UserMetric] = Field(default_factory=list)


class Metrics(_Message):
    """The slot's task counters, every second."""

    t: Literal["metrics"] = "metrics"
    tasks: list[TaskCounters]


ToSlot = Annotated[
    Deploy | Start | Trigger | Notify | Abort | Finish | Cancel | Release | Bye | Ping, Field(discriminator="t")
]
ToJobMaster = Annotated[
    Register | Prepared | Released | Ack | Decline | TaskFailed | SlotFailed | EndOfInput | SlotFinished | Metrics,
    Field(discriminator="t"),
]
Event = Annotated[BarrierEvent | EndOfStreamEvent | WatermarkEvent | WatermarkStatusEvent, Field(discriminator="t")]

TO_SLOT: TypeAdapter[ToSlot] = TypeAdapter(ToSlot)
TO_JOBMASTER: TypeAdapter[ToJobMaster] = TypeAdapter(ToJobMaster)
EVENT: TypeAdapter[Event] = TypeAdapter(Event)
CHALLENGE: TypeAdapter[Challenge] = TypeAdapter(Challenge)
HELLO: TypeAdapter[Hello] = TypeAdapter(Hello)
WELCOME: TypeAdapter[Welcome] = TypeAdapter(Welcome)

M = TypeVar("M")


def encode(message: _Message) -> bytes:
    """A message as bytes (msgpack map; ``bytes`` fields stay binary)."""
    return msgpack.packb(message.model_dump(), use_bin_type=True)  # type: ignore[no-any-return]


def decode(data: bytes, schema: TypeAdapter[M]) -> M:
    """The message ``data`` holds, of one of the kinds ``schema`` admits; ``ProtocolError`` otherwise."""
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
    except (ValueError, TypeError, msgpack.ExtraData) as err:
        raise ProtocolError(f"not a msgpack message ({type(err).__name__})") from None
    if not isinstance(raw, dict):
        raise ProtocolError(f"a message must be a map, got {type(raw).__name__}")
    try:
        return schema.validate_python(raw)
    except ValidationError as err:
        raise ProtocolError(_describe(err, raw)) from None


def _describe(err: ValidationError, raw: dict[Any, Any]) -> str:
    """One line: the message kind and the first few problems (``field: message``)."""
    kind = raw.get("t")
    problems = []
    for item in err.errors()[:3]:
        loc = item["loc"][1:] if item["loc"] and item["loc"][0] == kind else item["loc"]
        where = ".".join(str(p) for p in loc) or "t"
        problems.append(f"{where}: {item['msg']}")
    more = f" (+{err.error_count() - 3} more)" if err.error_count() > 3 else ""
    name = f"'{kind}'" if isinstance(kind, str) else "without a valid kind"
    return f"invalid message {name[:60]}: {'; '.join(problems)}{more}"


def encode_event(event: StreamEvent) -> bytes:
    """A data plane EVENT frame's payload."""
    if type(event) is Barrier:
        return encode(BarrierEvent(barrier=BarrierSpec.of(event)))
    if type(event) is Watermark:
        return encode(WatermarkEvent(timestamp_ms=event.timestamp_ms))
    if type(event) is WatermarkStatus:
        return encode(WatermarkStatusEvent(idle=event.idle))
    return encode(EndOfStreamEvent())


def decode_event(data: bytes) -> StreamEvent:
    """The event an EVENT frame carries; ``ProtocolError`` otherwise."""
    event = decode(data, EVENT)
    if isinstance(event, BarrierEvent):
        return event.barrier.to_barrier()
    if isinstance(event, WatermarkEvent):
        return Watermark(event.timestamp_ms)
    if isinstance(event, WatermarkStatusEvent):
        return WatermarkStatus(event.idle)
    return END_OF_STREAM
