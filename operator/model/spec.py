"""The ``spec`` of a StreamJob: what the user asks for, in the CRD's camelCase.

Every field documents itself (the descriptions end up in the CRD and in ``kubectl explain``).
Parsed by the controller from the resource body (``StreamJobSpec.parse``); read by
``validation``, ``diff``, ``decisions`` and the ``resources`` builders. The CEL rules attached
with ``json_schema_extra`` run in the API server; ``validation`` repeats what CEL cannot express.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from streamjob.operator.model.pod_template_schema import POD_TEMPLATE_MARKER
from streamjob.worker.config import (
    UNALIGNED_NEEDS_ONE_CONCURRENT,
    CheckpointingMode,
    CheckpointOverrides,
)

GROUP = "streamjob.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "StreamJob"
PLURAL = "streamjobs"
SHORT_NAME = "sj"

CEL = "x-kubernetes-validations"


class CamelModel(BaseModel):
    """Base of every spec/status model: camelCase on the wire, snake_case in Python, frozen."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        extra="ignore",
        use_enum_values=False,
    )

    def wire(self) -> dict[str, Any]:
        """The JSON-ready camelCase dict, without unset optional fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class UpgradeMode(StrEnum):
    """How state crosses a spec change: a fresh savepoint, the latest checkpoint, or none."""

    SAVEPOINT = "savepoint"
    LAST_STATE = "last-state"
    STATELESS = "stateless"


class JobState(StrEnum):
    """The state the user wants the job in."""

    RUNNING = "running"
    SUSPENDED = "suspended"


class PullPolicy(StrEnum):
    """Kubernetes image pull policy."""

    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


class RestartStrategyKind(StrEnum):
    """Delay between restarts: constant, or growing by ``multiplier`` up to ``maxDelaySeconds``."""

    FIXED = "fixed"
    EXPONENTIAL = "exponential"


class CheckpointSpec(CamelModel, CheckpointOverrides):
    """Overrides of the pipeline's checkpoint configuration; an unset field keeps the code's value.

    The fields, their bounds, enums and descriptions are the worker's ``CheckpointOverrides``, here
    in camelCase; the CEL rules are the worker's rules across fields (``CheckpointSettings``), with
    its message, checked by the API server when the StreamJob is written.
    """

    model_config = ConfigDict(
        **CamelModel.model_config,
        json_schema_extra={
            CEL: [
                {
                    "rule": "!(has(self.unaligned) && self.unaligned && has(self.maxConcurrent) "
                    "&& self.maxConcurrent > 1 && !(has(self.mode) "
                    f"&& self.mode == '{CheckpointingMode.AT_LEAST_ONCE.value}'))",
                    "message": UNALIGNED_NEEDS_ONE_CONCURRENT.replace("max_concurrent", "maxConcurrent"),
                },
            ]
        },
    )


class SecretKeyRef(CamelModel):
    """The Secret holding S3 credentials, mounted into every pod as AWS_* environment variables."""

    name: str = Field(min_length=1, max_length=253, description="Secret name in the job's namespace.")
    access_key_id_key: str = Field(default="AWS_ACCESS_KEY_ID", description="Key of the access key id.")
    secret_access_key_key: str = Field(default="AWS_SECRET_ACCESS_KEY", description="Key of the secret access key.")


class S3Spec(CamelModel):
    """S3-compatible storage settings (MinIO, SeaweedFS, Ceph, AWS)."""

    endpoint: str | None = Field(default=None, description="Endpoint URL; unset means AWS.")
    region: str | None = Field(default=None, description="Region name.")
    path_style: bool | None = Field(default=None, description="Path-style addressing (MinIO, SeaweedFS).")
    credentials_secret: SecretKeyRef | None = Field(default=None, description="Secret with the credentials.")


class StorageSpec(CamelModel):
    """Where checkpoints and savepoints live: ``s3://bucket/prefix`` or ``file:///path``."""

    checkpoints_uri: str = Field(
        pattern=r"^(s3://[^/]+(/.*)?|file:///.*)$", description="Root of the job's checkpoints."
    )
    savepoints_uri: str | None = Field(
        default=None,
        pattern=r"^(s3://[^/]+(/.*)?|file:///.*)$",
        description="Root of savepoints; defaults to checkpointsUri.",
    )
    s3: S3Spec = Field(default_factory=S3Spec, description="S3 connection settings.")


class TlsSpec(CamelModel):
    """TLS for the job's pods from a Secret with ``tls.crt``, ``tls.key`` and ``ca.crt`` (as cert-manager writes it)."""

    secret_name: str = Field(min_length=1, max_length=253, description="Secret in the job's namespace.")
    internal: bool = Field(default=True, description="Mutual TLS on the control and data ports.")
    rest: bool = Field(default=True, description="HTTPS on the JobMaster's REST API.")


class BackoffSpec(CamelModel):
    """Delay before each restart of a failed attempt."""

    model_config = ConfigDict(
        json_schema_extra={
            CEL: [
                {
                    "rule": "self.maxDelaySeconds >= self.initialDelaySeconds",
                    "message": "maxDelaySeconds must be at least initialDelaySeconds",
                }
            ]
        }
    )

    initial_delay_seconds: float = Field(default=1.0, ge=0, le=3600, description="First delay.")
    max_delay_seconds: float = Field(default=60.0, ge=0, le=86400, description="Largest delay.")
    multiplier: float = Field(default=2.0, ge=1, le=10, description="Growth factor (exponential).")


class RestartPolicySpec(CamelModel):
    """What the operator does when a pod of the job fails: restart from the latest checkpoint."""

    strategy: RestartStrategyKind = Field(default=RestartStrategyKind.EXPONENTIAL, description="Backoff kind.")
    max_restarts: int = Field(
        default=10, ge=0, le=100000, description="Restarts allowed before the job is marked Failed."
    )
    reset_after_seconds: int = Field(
        default=600, ge=0, description="Running this long without failure resets the restart count."
    )
    backoff: BackoffSpec = Field(default_factory=BackoffSpec, description="Delay between restarts.")

    def delay_for(self, restart_number: int) -> float:
        """Seconds to wait before restart ``restart_number`` (1-based)."""
        base = self.backoff.initial_delay_seconds
        if self.strategy is RestartStrategyKind.FIXED:
            return base
        return float(min(self.backoff.max_delay_seconds, base * self.backoff.multiplier ** (restart_number - 1)))


def pod_template_field(description: str) -> Any:
    """A full PodTemplateSpec field: the CRD gets the Kubernetes schema of one (``pod_template_schema``)."""
    return Field(default=None, description=description, json_schema_extra={POD_TEMPLATE_MARKER: True})


class PodOverrides(CamelModel):
    """Resources and pod-template overrides for the JobMaster or the worker pods."""

    pod_template: dict[str, Any] | None = pod_template_field(
        "A PodTemplateSpec merged over spec.podTemplate for this role's pods: sidecars, init containers, "
        "imagePullSecrets, envFrom, securityContext, topologySpreadConstraints, ... The main container "
        "(named jobmaster or worker) is matched by name; the operator's fields win and a template that "
        "sets one (command, ports, image, restartPolicy, ...) is refused naming the field."
    )

    resources: dict[str, dict[str, int | str]] = Field(
        default_factory=dict, description="Container resources: {requests: {...}, limits: {...}}."
    )
    env: list[dict[str, Any]] = Field(default_factory=list, description="Extra container env entries.")
    labels: dict[str, str] = Field(default_factory=dict, description="Extra pod labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Extra pod annotations.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Pod nodeSelector.")
    tolerations: list[dict[str, Any]] = Field(default_factory=list, description="Pod tolerations.")
    affinity: dict[str, Any] = Field(default_factory=dict, description="Pod affinity.")
    volumes: list[dict[str, Any]] = Field(default_factory=list, description="Extra pod volumes.")
    volume_mounts: list[dict[str, Any]] = Field(default_factory=list, description="Extra volume mounts.")
    priority_class_name: str | None = Field(default=None, description="Pod priorityClassName.")
    security_context: dict[str, Any] = Field(
        default_factory=dict,
        description="Pod securityContext, merged over the defaults (runAsNonRoot, runAsUser 10001, seccomp "
        "RuntimeDefault); root needs the operator value security.allowRunAsRoot.",
    )
    container_security_context: dict[str, Any] = Field(
        default_factory=dict,
        description="Container securityContext, merged over the defaults (readOnlyRootFilesystem, no "
        "privilege escalation, capabilities drop ALL); privileged, allowPrivilegeEscalation and added "
        "capabilities need operator values (security.*).",
    )
    automount_service_account_token: bool | None = Field(
        default=None, description="Mount the service account token (default false: the job needs none)."
    )
    host_network: bool | None = Field(default=None, description="hostNetwork (needs security.allowHostNamespaces).")
    host_pid: bool | None = Field(
        default=None, alias="hostPID", description="hostPID (needs security.allowHostNamespaces)."
    )
    host_ipc: bool | None = Field(
        default=None, alias="hostIPC", description="hostIPC (needs security.allowHostNamespaces)."
    )


class TimeoutsSpec(CamelModel):
    """Every phase ends within its timeout in a reported state; none waits forever."""

    pod_start_seconds: int = Field(
        default=180,
        ge=5,
        description="A pod not Running by then fails the attempt (image pulls, scheduling).",
    )
    savepoint_seconds: int = Field(default=300, ge=5, description="A savepoint not done by then has failed.")
    upgrade_seconds: int = Field(
        default=300, ge=10, description="An upgrade not Running and stable by then is rolled back."
    )
    stable_seconds: int = Field(
        default=10, ge=0, description="Running this long (or one checkpoint) makes a deployment stable."
    )
    teardown_seconds: int = Field(default=60, ge=5, description="Time for an attempt's pods to go away.")
    cancel_seconds: int = Field(default=30, ge=1, description="Time for the JobMaster to answer a cancel.")


DURATION = r"^[1-9][0-9]{0,8}(s|m|h|d)$"
CRON = r"^\S+ \S+ \S+ \S+ \S+$"


def duration_seconds(text: str) -> int:
    """``30s``, ``10m``, ``2h``, ``7d`` → seconds (the pattern ``DURATION`` is checked by the API server)."""
    return int(text[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[text[-1]]


class SavepointsSpec(CamelModel):
    """Periodic savepoints and how many of the savepoints the operator takes are kept."""

    model_config = ConfigDict(
        json_schema_extra={
            CEL: [
                {
                    "rule": "!(has(self.interval) && has(self.cron))",
                    "message": "set either interval or cron for periodic savepoints, not both",
                }
            ]
        }
    )

    interval: str | None = Field(
        default=None, pattern=DURATION, description="Take a savepoint this often while running (30s, 10m, 1h, 1d)."
    )
    cron: str | None = Field(
        default=None,
        pattern=CRON,
        max_length=200,
        description="Take a savepoint at these times (UTC, five fields: minute hour day-of-month month "
        "day-of-week; *, lists, ranges and /steps).",
    )
    max_count: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="Savepoints the operator took (periodic, nonce, upgrade, suspension) kept as "
        "StreamJobSnapshots; older ones are deleted with their files. Snapshots users created are never.",
    )
    max_age: str | None = Field(
        default=None,
        pattern=DURATION,
        description="Also delete those older than this (the newest completed one is always kept).",
    )


class RestoreFromSpec(CamelModel):
    """A snapshot to restore by its StreamJobSnapshot name, where initialSavepointPath would be used."""

    snapshot_name: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="Name of a COMPLETED StreamJobSnapshot in the job's namespace.",
    )


class StreamJobSpec(CamelModel):
    """A checkpointed streaming job: its code, parallelism, state handling and pods."""

    model_config = ConfigDict(
        json_schema_extra={
            CEL: [
                {
                    "rule": "self.parallelism <= self.maxParallelism",
                    "message": "parallelism must not exceed maxParallelism (the number of key groups)",
                },
                {
                    "rule": "!has(self.workers) || self.workers * self.taskSlots >= self.parallelism",
                    "message": "workers * taskSlots must provide at least parallelism slots",
                },
                {
                    "rule": "!has(self.savepointRedeployNonce) || has(self.initialSavepointPath) "
                    "|| has(self.restoreFrom)",
                    "message": "savepointRedeployNonce needs initialSavepointPath or restoreFrom to redeploy from",
                },
                {
                    "rule": "!(has(self.initialSavepointPath) && has(self.restoreFrom))",
                    "message": "set either initialSavepointPath or restoreFrom.snapshotName, not both",
                },
                {
                    "rule": "!has(oldSelf.maxParallelism) || self.maxParallelism == oldSelf.maxParallelism "
                    "|| self.upgradeMode == 'stateless'",
                    "message": "maxParallelism cannot change while state is kept; use upgradeMode stateless",
                },
            ]
        }
    )

    image: str = Field(min_length=1, description="Image built FROM the streamjob image, holding the job code.")
    image_pull_policy: PullPolicy = Field(default=PullPolicy.IF_NOT_PRESENT, description="Image pull policy.")
    entrypoint: str = Field(
        min_length=1,
        pattern=r"^([A-Za-z_][A-Za-z0-9_.]*|/.+\.py)(:[A-Za-z_][A-Za-z0-9_]*)?$",
        description="`package.module[:function]` building the pipeline, or an absolute `/path/job.py[:function]`.",
    )
    args: list[str] = Field(default_factory=list, description="Arguments passed to the job function.")
    parallelism: int = Field(default=1, ge=1, le=32768, description="Parallelism of the job.")
    max_parallelism: int = Field(default=128, ge=1, le=32768, description="Key groups; the upper bound of rescaling.")
    task_slots: int = Field(default=1, ge=1, le=256, description="Slots (processes) per worker pod.")
    workers: int | None = Field(
        default=None, ge=1, le=10000, description="Worker pods; default ceil(parallelism / taskSlots)."
    )
    standby_workers: int = Field(
        default=0,
        ge=0,
        le=100,
        description="Extra worker pods whose slots stay idle as spares: a worker failure redeploys onto them at "
        "once instead of waiting for a replacement pod (Flink's redundant TaskManagers). Default 0.",
    )
    state: JobState = Field(default=JobState.RUNNING, description="running or suspended.")
    upgrade_mode: UpgradeMode = Field(default=UpgradeMode.SAVEPOINT, description="savepoint, last-state or stateless.")
    initial_savepoint_path: str | None = Field(
        default=None, description="Savepoint to start from on first deploy (and on savepointRedeployNonce)."
    )
    allow_non_restored_state: bool = Field(
        default=False, description="Allow state for operators that no longer exist to be skipped on restore."
    )
    savepoint_trigger_nonce: int | None = Field(default=None, description="Change to take a savepoint.")
    checkpoint_trigger_nonce: int | None = Field(default=None, description="Change to take a checkpoint.")
    restart_nonce: int | None = Field(default=None, description="Change to restart from the latest checkpoint.")
    savepoint_redeploy_nonce: int | None = Field(
        default=None, description="Change to redeploy from initialSavepointPath with a new jobId."
    )
    state_backend: Literal["hashmap", "rocksdb"] | None = Field(default=None, description="State backend.")
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec, description="Checkpoint overrides.")
    storage: StorageSpec = Field(description="Checkpoint and savepoint storage.")
    restart_policy: RestartPolicySpec = Field(
        default_factory=RestartPolicySpec, description="Restarts after pod failures."
    )
    max_state_age_seconds: int | None = Field(
        default=None,
        ge=1,
        description="last-state refuses a checkpoint older than this (triggers a new one).",
    )
    pod_template: dict[str, Any] | None = pod_template_field(
        "A PodTemplateSpec for the JobMaster and the worker pods (the Flink Kubernetes Operator's model); "
        "jobManager.podTemplate and taskManager.podTemplate are merged over it, the operator's fields over all."
    )
    job_manager: PodOverrides = Field(default_factory=PodOverrides, description="JobMaster pod overrides.")
    task_manager: PodOverrides = Field(default_factory=PodOverrides, description="Worker pod overrides.")
    service_account: str | None = Field(default=None, description="Service account of the job's pods.")
    tls: TlsSpec | None = Field(default=None, description="TLS for the internal planes and the REST API; off if unset.")
    timeouts: TimeoutsSpec = Field(default_factory=TimeoutsSpec, description="Per-phase timeouts.")
    savepoint_history_size: int = Field(
        default=10, ge=1, le=100, description="Savepoints kept in status.savepointHistory."
    )
    rollback_on_failure: bool = Field(
        default=True, description="Roll a failed upgrade back to the last stable spec and its state."
    )
    savepoint_on_deletion: bool = Field(
        default=False,
        description="Take a final savepoint (bounded by timeouts) when the StreamJob is deleted.",
    )
    # -- snapshots as resources (StreamJobSnapshot), periodic savepoints, retention --
    restore_from: RestoreFromSpec | None = Field(
        default=None,
        description="Restore a StreamJobSnapshot by name wherever initialSavepointPath would be restored.",
    )
    savepoints: SavepointsSpec = Field(
        default_factory=SavepointsSpec, description="Periodic savepoints and their retention."
    )
    delete_old_lineages: bool = Field(
        default=True,
        description="Delete the checkpoints of earlier jobIds (earlier upgrades and redeploys) once the "
        "current one has a retained checkpoint; never a lineage holding a restore point in use.",
    )

    @property
    def worker_count(self) -> int:
        """Worker pods to run: explicit ``workers`` or just enough slots for the parallelism."""
        if self.workers is not None:
            return self.workers
        return -(-self.parallelism // self.task_slots)

    @property
    def worker_pods(self) -> int:
        """Worker pods an attempt runs: ``worker_count`` for the tasks plus ``standby_workers`` idle spares."""
        return self.worker_count + self.standby_workers

    @property
    def savepoints_root(self) -> str:
        """Where savepoints go (``savepointsUri`` or, unset, ``checkpointsUri``)."""
        return self.storage.savepoints_uri or self.storage.checkpoints_uri

    @classmethod
    def parse(cls, raw: object) -> StreamJobSpec:
        """Validates a spec dict from the API server (camelCase); raises pydantic's ValidationError."""
        return cls.model_validate(raw)
