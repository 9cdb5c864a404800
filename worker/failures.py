"""Failures that no restart can mend: classified where they happen, acted on by the JobMaster.

A slot (``slot.py``) reports a task or deployment failure with ``failure_class`` (see
``classify``); the JobMaster (``jobmaster/jobmaster.py``) turns a classified failure into a final
one (``final_failure``): the job fails at once with the class's exit code and a message saying what
to do, whatever the restart strategy allows. Restarting would only repeat it:

- ``corrupt_restore`` (exit 3): a restore input is missing, damaged or does not decode — the next
  attempt reads the same bytes (``CorruptStateError``).
- ``incompatible_restore`` (exit 4): the snapshot does not fit the job's code (a serializer or
  state kind that changed, a format this version cannot read) — the next attempt runs the same code
  (``RestoreError``).
- ``job_load`` (exit 2): a slot cannot load the job (its entrypoint raises at import or build, or
  builds another graph than the JobMaster's). Classified final on the first occurrence rather than
  after N repeats: loading runs only the job's code on the worker's image and environment, which a
  restart does not change; counting repeats would need memory across JobMaster processes on
  Kubernetes and would only delay the message. Failures while deploying that may pass (storage
  unreachable while reading in-flight data) are not classified and restart as usual.
- ``unserializable`` (exit 2): a value its serializer cannot encode (a state value of a class the
  job did not allow, an object that is no data) or bytes it refuses to decode
  (``SerializationError``) — the next attempt replays the same records into the same code. The
  error names the state, the type and the one line that fixes it.

At start-up (``final_at_start``), before any attempt: a bad config value or a job module that
does not import or build is final too (a restart runs the same image and config), as are a
corrupt or incompatible restore point; unreachable storage is not. On Kubernetes the JobMaster
says which in its termination message (``protocol/termination.py``), which the operator reads.

Every failure is also described for the user (``describe``: exception type, message, the operator
whose code raised and the innermost traceback lines), which a slot sends with its failure message
and the JobMaster shows in ``GET /job`` (``failure_detail``) for the operator to report.

Pure functions, no I/O; the message fields are plain strings so that any wire protocol carries them.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from streamjob.worker.errors import (
    ConfigError,
    CorruptStateError,
    EntrypointError,
    PipelineError,
    RestoreError,
    SerializationError,
    StorageError,
)


class FailureClass(StrEnum):
    """Why a failure is final (the value travels in the slot's failure message)."""

    CORRUPT_RESTORE = "corrupt_restore"
    INCOMPATIBLE_RESTORE = "incompatible_restore"
    JOB_LOAD = "job_load"
    UNSERIALIZABLE = "unserializable"


_EXIT_CODES = {
    FailureClass.CORRUPT_RESTORE: StorageError.exit_code,
    FailureClass.INCOMPATIBLE_RESTORE: RestoreError.exit_code,
    FailureClass.JOB_LOAD: EntrypointError.exit_code,
    FailureClass.UNSERIALIZABLE: PipelineError.exit_code,
}


@dataclass(frozen=True)
class FinalFailure:
    """A failure that ends the job: the reason shown to the user and the process exit code."""

    reason: str
    exit_code: int


def classify(err: BaseException, *, deploying: bool = False) -> FailureClass | None:
    """The class of a failure a restart cannot mend, or None (restart under the strategy).

    ``deploying``: the error ended a slot's deployment (loading the job, preparing its tasks).
    """
    if isinstance(err, CorruptStateError):
        return FailureClass.CORRUPT_RESTORE
    if isinstance(err, RestoreError):
        return FailureClass.INCOMPATIBLE_RESTORE
    if deploying and isinstance(err, EntrypointError | PipelineError):
        return FailureClass.JOB_LOAD
    if isinstance(err, SerializationError):
        return FailureClass.UNSERIALIZABLE
    return None


def final_at_start(err: BaseException) -> bool:
    """Whether an error that stopped the JobMaster before its first attempt is one no restart can mend."""
    return isinstance(err, ConfigError | EntrypointError | PipelineError) or classify(err) is not None


def failure_fields(err: BaseException, *, deploying: bool = False) -> dict[str, Any]:
    """The fields a slot adds to its failure message (``corrupt_restore`` is the older form of the first class)."""
    kind = classify(err, deploying=deploying)
    return {"corrupt_restore": kind is FailureClass.CORRUPT_RESTORE, "failure_class": kind.value if kind else None}


def final_failure(where: str, message: dict[str, Any]) -> FinalFailure | None:
    """The final failure a slot's ``task_failed``/``slot_failed`` message describes, or None to restart.

    ``where`` names the task or slot for the user ("task sums (2)", "worker slot 1").
    """
    raw = message.get("failure_class") or ("corrupt_restore" if message.get("corrupt_restore") else None)
    try:
        kind = FailureClass(raw) if raw else None
    except ValueError:
        return None  # a class this JobMaster does not know: restart as before
    if kind is None:
        return None
    error = message.get("error")
    if kind is FailureClass.CORRUPT_RESTORE:
        reason = (
            f"{where} cannot restore: {error}; restarting would read the same files again, so the job "
            "fails. Start it from an older checkpoint or savepoint with --restore URI (`streamjob "
            "checkpoints <checkpoint dir>` lists them)"
        )
    elif kind is FailureClass.INCOMPATIBLE_RESTORE:
        reason = (
            f"{where} cannot restore: {error}; the snapshot does not fit the job's code and a restart runs "
            "the same code, so the job fails. Fix the job (or allow the change), or start it from another "
            "snapshot with --restore URI, or without one"
        )
    elif kind is FailureClass.UNSERIALIZABLE:
        reason = (
            f"{where} failed: {error}; every attempt would replay the same records into the same code, so the job fails"
        )
    else:
        reason = (
            f"{where} cannot load the job: {error}; every attempt would load it the same way, so the job "
            "fails. Fix the job, or the worker's image or environment, and start it again"
        )
    return FinalFailure(reason, _EXIT_CODES[kind])


#: Traceback lines a failure carries (the innermost frames and the exception line), and their width.
TRACEBACK_LINES = 20
LINE_CHARS = 300


@dataclass(frozen=True)
class FailureDescription:
    """What a user needs to find the cause: the exception, the operator it ended in, where in the code."""

    exception: str
    message: str
    operator_uid: str | None
    traceback: tuple[str, ...]


def describe(err: BaseException) -> FailureDescription:
    """Describes ``err`` for the user; walks its traceback only here, on failure (no cost per record).

    ``operator_uid``: the uid of the innermost runtime operator on the stack (a frame whose ``self``
    has a string ``uid`` and lives in ``streamjob.worker.runtime``): the operator whose function raised.
    """
    uid: str | None = None
    tb = err.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        found = getattr(owner, "uid", None)
        if isinstance(found, str) and type(owner).__module__.startswith("streamjob.worker.runtime"):
            uid = found
        tb = tb.tb_next
    text = "".join(traceback.format_exception(err)).splitlines()
    lines = tuple(line[:LINE_CHARS] for line in text if line.strip(" ^~"))[-TRACEBACK_LINES:]
    return FailureDescription(type(err).__name__, str(err)[:2000], uid, lines)
