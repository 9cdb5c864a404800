"""Renders an attempt's ``streamjob.worker.config.JobConfig`` and the ConfigMap that carries it.

The JobMaster reads ``/etc/streamjob/job.json`` (``streamjob jobmaster --config``); the model is
the runtime's own, so a field the runtime does not accept fails here, in the operator, with a
message, and never in a crash-looping pod.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streamjob.operator.model.spec import RestartPolicySpec, RestartStrategyKind, StreamJobSpec
from streamjob.operator.resources.labels import (
    CONFIG_FILE,
    CONTROL_PORT,
    REST_PORT,
    TLS_DIR,
    JobRef,
    configmap_name,
    labels_for,
    owner_reference,
)
from streamjob.worker.config import (
    MAX_DURATION_MS,
    CheckpointOverrides,
    JobConfig,
    RestartStrategy,
    S3Options,
    TlsSettings,
)


@dataclass(frozen=True)
class Attempt:
    """One deployment of a job: which spec, which lineage, which attempt, restoring what."""

    job: JobRef
    spec: StreamJobSpec
    attempt: int
    job_id: str
    restore_from: str | None = None
    #: Seconds of restart backoff left when the pods are created: the JobMaster deploys no task sooner
    #: than this after it started (``streamjob jobmaster --hold-deploy``); 0 for no backoff.
    hold_deploy_s: float = 0.0


def restart_strategy(policy: RestartPolicySpec) -> RestartStrategy:
    """The spec's ``restartPolicy`` as the JobMaster's restart strategy (its failovers without a new JobMaster).

    Both kinds reset after ``resetAfterSeconds`` of running, as the operator's own count does: a fixed
    delay is an exponential one that never grows.
    """
    backoff = policy.backoff
    fixed = policy.strategy is RestartStrategyKind.FIXED
    return RestartStrategy(
        kind="exponential-delay",
        attempts=policy.max_restarts,
        delay_ms=round(backoff.initial_delay_seconds * 1000),
        max_delay_ms=round((backoff.initial_delay_seconds if fixed else backoff.max_delay_seconds) * 1000),
        multiplier=1.0 if fixed else backoff.multiplier,
        reset_after_ms=min(policy.reset_after_seconds * 1000, MAX_DURATION_MS),
    )


def render_job_config(at: Attempt) -> JobConfig:
    """The JobConfig of the attempt.

    ``restart_in_place``: a worker failure is the JobMaster's to recover (new tasks from the latest
    checkpoint on the surviving and replaced workers, under ``restartPolicy``); the operator replaces
    crashed worker pods and restarts the attempt only when its JobMaster fails or gives up.
    """
    spec = at.spec
    checkpoint = spec.checkpoint.model_dump(exclude_none=True, mode="json")
    s3 = spec.storage.s3
    return JobConfig(
        name=at.job.name,
        namespace=at.job.namespace,
        job_id=at.job_id,
        attempt=at.attempt,
        entrypoint=spec.entrypoint,
        args=list(spec.args),
        parallelism=spec.parallelism,
        max_parallelism=spec.max_parallelism,
        state_backend=spec.state_backend,
        checkpoint=CheckpointOverrides.model_validate(checkpoint),
        checkpoints_uri=spec.storage.checkpoints_uri,
        savepoints_uri=spec.savepoints_root,
        restore_from=at.restore_from,
        allow_non_restored_state=spec.allow_non_restored_state,
        restart=restart_strategy(spec.restart_policy),
        restart_in_place=True,
        workers=spec.worker_count,
        slots_per_worker=spec.task_slots,
        rest_port=REST_PORT,
        control_port=CONTROL_PORT,
        s3=S3Options(endpoint_url=s3.endpoint, region=s3.region, path_style=s3.path_style),
        internal_tls=TlsSettings.from_dir(TLS_DIR) if spec.tls and spec.tls.internal else None,
        rest_tls=TlsSettings.from_dir(TLS_DIR) if spec.tls and spec.tls.rest else None,
    )


def build_configmap(at: Attempt) -> dict[str, Any]:
    """The ConfigMap ``<name>-config-<attempt>`` with ``job.json``."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(at.job, at.attempt),
            "namespace": at.job.namespace,
            "labels": labels_for(at.job, "config", attempt=at.attempt, job_id=at.job_id),
            "ownerReferences": [owner_reference(at.job)],
        },
        "data": {CONFIG_FILE: render_job_config(at).model_dump_json(indent=2)},
    }
