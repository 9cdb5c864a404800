"""The planner's outputs (actions, events, the plan) and the draft it edits (pure data).

``controller`` gathers ``Facts`` through the observer (``observer/facts.py``), ``reconciler.plan``
returns a ``Plan``; the controller patches ``Plan.status`` first (the write-ahead) and only then
carries out the actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from streamjob.operator.model.status import Condition, StreamJobStatus
from streamjob.operator.observer.facts import Facts
from streamjob.operator.resources.configmap import Attempt
from streamjob.operator.timeutil import format_time


@dataclass(frozen=True)
class DeployAttempt:
    """Create the attempt's ConfigMap, the REST Service and the JobMaster pod (idempotent)."""

    attempt: Attempt


@dataclass(frozen=True)
class DeployWorkers:
    """Create the attempt's worker pods, pointed at the JobMaster's IP (idempotent)."""

    attempt: Attempt
    jobmaster_ip: str


@dataclass(frozen=True)
class ReplaceWorkers:
    """Delete crashed worker pods of the running attempt and create ``create`` in their place (idempotent)."""

    attempt: Attempt
    jobmaster_ip: str
    delete: tuple[str, ...]
    create: tuple[str, ...]


@dataclass(frozen=True)
class DeleteWorkers:
    """Delete surplus worker pods of the running attempt after a rescale down (the JobMaster let their slots go)."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class RescaleJob:
    """``POST /rescale {"parallelism": N}``: the JobMaster rescales in place; ``GET /job`` reports how it went."""

    jobmaster_ip: str
    parallelism: int


@dataclass(frozen=True)
class DeletePods:
    """Delete every pod and ConfigMap of the job except those of ``keep_attempt``."""

    keep_attempt: int | None
    grace_seconds: int
    retain_attempt: int | None = None
    """A failed attempt whose ended pods are kept (relabelled out of the job) until ``retain_until``."""
    retain_until: str | None = None


@dataclass(frozen=True)
class DeleteRetained:
    """Delete retained pods of failed attempts whose time is up."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class TriggerSavepoint:
    """``POST /savepoints`` (``stop`` = stop-with-savepoint); the request id goes to status."""

    jobmaster_ip: str
    stop: bool


@dataclass(frozen=True)
class TriggerCheckpoint:
    """``POST /checkpoints``."""

    jobmaster_ip: str


@dataclass(frozen=True)
class CreateSnapshot:
    """Create a StreamJobSnapshot (``body``) and then write its ``status`` (an existing one: status only)."""

    body: dict[str, Any]
    status: dict[str, Any]


@dataclass(frozen=True)
class PatchSnapshot:
    """Merge-patch a StreamJobSnapshot's status and (when given) its labels; one already gone is fine."""

    name: str
    status: dict[str, Any]
    labels: dict[str, str] | None = None


@dataclass(frozen=True)
class DeleteSnapshot:
    """Delete a StreamJobSnapshot (retention); its finalizer disposes of its files."""

    name: str


@dataclass(frozen=True)
class DiscardLineages:
    """Delete the checkpoint directories of older jobIds."""

    job_ids: tuple[str, ...]


SnapshotAction = CreateSnapshot | PatchSnapshot | DeleteSnapshot | DiscardLineages
Action = (
    DeployAttempt
    | DeployWorkers
    | ReplaceWorkers
    | DeleteWorkers
    | RescaleJob
    | DeletePods
    | DeleteRetained
    | TriggerSavepoint
    | TriggerCheckpoint
    | SnapshotAction
)


@dataclass(frozen=True)
class EventRecord:
    """A Kubernetes Event to emit on the StreamJob."""

    reason: str
    message: str
    warning: bool = False


@dataclass(frozen=True)
class Plan:
    """What to write to status (first) and then do."""

    status: StreamJobStatus
    actions: tuple[Action, ...]
    events: tuple[EventRecord, ...]


class Draft:
    """The status being edited during one planning round, with the actions and events it implies."""

    def __init__(self, facts: Facts) -> None:
        """Starts from the observed status."""
        self.facts = facts
        self.status = facts.status
        self.actions: list[Action] = []
        self.events: list[EventRecord] = []

    @property
    def now_text(self) -> str:
        """The round's time, formatted for status."""
        return format_time(self.facts.now)

    def update(self, **changes: Any) -> None:
        """Replaces status fields (snake_case names)."""
        self.status = self.status.model_copy(update=changes)

    def act(self, action: Action) -> None:
        """Queues an action (run after the status patch)."""
        self.actions.append(action)

    def event(self, reason: str, message: str, *, warning: bool = False) -> None:
        """Queues an event."""
        self.events.append(EventRecord(reason, message, warning))

    def condition(self, type_: str, ok: bool | None, reason: str, message: str = "") -> None:
        """Sets a condition, keeping its transition time when its status is unchanged."""
        value: Literal["True", "False", "Unknown"] = "Unknown" if ok is None else ("True" if ok else "False")
        old = self.status.condition(type_)
        when = old.last_transition_time if old is not None and old.status == value else self.now_text
        new = Condition(type=type_, status=value, reason=reason, message=message, last_transition_time=when)
        others = [c for c in self.status.conditions if c.type != type_]
        self.update(conditions=sorted([*others, new], key=lambda c: c.type))

    def plan(self) -> Plan:
        """The finished plan."""
        return Plan(self.status, tuple(self.actions), tuple(self.events))
