"""Old spec, new spec → what kind of change it is (pure).

Each spec field is tagged with the change it causes, as in the Flink Kubernetes Operator:
operator-only fields (restart policy, timeouts, nonces handled elsewhere, ...) are ignored, ``state``
suspends or resumes, and everything that the pods or the job config see is an upgrade (a
parallelism change is a rescale, carried out as an upgrade). Called by ``reconciler.plan``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from streamjob.operator.model.spec import JobState, StreamJobSpec

#: Fields that never redeploy the job by themselves.
IGNORED_FIELDS = frozenset(
    {
        "state",
        "upgrade_mode",
        "initial_savepoint_path",
        "savepoint_trigger_nonce",
        "checkpoint_trigger_nonce",
        "restart_nonce",
        "savepoint_redeploy_nonce",
        "restart_policy",
        "max_state_age_seconds",
        "timeouts",
        "savepoint_history_size",
        "rollback_on_failure",
        "savepoint_on_deletion",
        "restore_from",
        "savepoints",
        "delete_old_lineages",
    }
)
SCALE_FIELDS = frozenset({"parallelism", "workers", "task_slots"})


class ChangeKind(StrEnum):
    """What a spec change asks the operator to do."""

    NONE = "none"
    IGNORE = "ignore"
    SCALE = "scale"
    UPGRADE = "upgrade"


@dataclass(frozen=True)
class SpecChange:
    """The classified difference between the reconciled spec and the current one."""

    kind: ChangeKind
    fields: tuple[str, ...] = ()
    suspend: bool = False
    resume: bool = False

    @property
    def redeploys(self) -> bool:
        """Whether the running job must be redeployed (upgrade or rescale)."""
        return self.kind in (ChangeKind.SCALE, ChangeKind.UPGRADE)

    def describe(self) -> str:
        """``parallelism, image`` for events."""
        return ", ".join(self.fields) or "nothing"


def _dump(spec: StreamJobSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json")


def classify(old: StreamJobSpec | None, new: StreamJobSpec) -> SpecChange:
    """Classifies ``old`` → ``new``; ``old`` None (never reconciled) is an upgrade of everything."""
    if old is None:
        return SpecChange(ChangeKind.UPGRADE, ("*",))
    before, after = _dump(old), _dump(new)
    changed = tuple(sorted(k for k in after if before.get(k) != after.get(k)))
    suspend = old.state is JobState.RUNNING and new.state is JobState.SUSPENDED
    resume = old.state is JobState.SUSPENDED and new.state is JobState.RUNNING
    relevant = tuple(k for k in changed if k not in IGNORED_FIELDS)
    if not changed:
        kind = ChangeKind.NONE
    elif not relevant:
        kind = ChangeKind.IGNORE
    elif set(relevant) <= SCALE_FIELDS:
        kind = ChangeKind.SCALE
    else:
        kind = ChangeKind.UPGRADE
    return SpecChange(kind, relevant or changed, suspend=suspend, resume=resume)


def job_fields_equal(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two wire specs would run the same job (ignoring operator-only fields)."""
    if a is None or b is None:
        return a is b
    return classify(StreamJobSpec.parse(a), StreamJobSpec.parse(b)).kind in (ChangeKind.NONE, ChangeKind.IGNORE)
