"""Names, labels and owner references shared by every object of a StreamJob.

Used by the other builders and by ``k8s`` (label selectors) and ``observer.pods`` (reading the
attempt back from a pod).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streamjob.operator.model.spec import API_VERSION, KIND

NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
COMPONENT_LABEL = "app.kubernetes.io/component"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
JOB_LABEL = "streamjob.dev/job"
ATTEMPT_LABEL = "streamjob.dev/attempt"
RETAINED_LABEL = "streamjob.dev/retained-for"
"""Replaces the job label on the pods of a failed attempt kept for their logs (value: the job name)."""
RETAINED_UNTIL = "streamjob.dev/retained-until"
"""Annotation: when a retained pod is deleted (RFC 3339)."""
RELEASED = "streamjob.dev/released"
"""Annotation taking a StreamJob out of the operator's hands (set by the uninstall hook, ``release``):
``handlers`` filter it out, so kopf drops the finalizer and never adds it back. Remove it
(``kubectl annotate sj NAME streamjob.dev/released-``) to hand the job to an operator again."""
JOB_ID_LABEL = "streamjob.dev/job-id"
RESERVED_PREFIXES = ("app.kubernetes.io/", "streamjob.dev/")

JOBMASTER = "jobmaster"
WORKER = "worker"
REST_PORT = 8081
CONTROL_PORT = 6123
"""The JobMaster's control port, where worker slots register (by the JobMaster pod's IP, not the Service)."""
CONFIG_DIR = "/etc/streamjob"
TLS_DIR = "/etc/streamjob/tls"
"""Where ``spec.tls.secretName`` is mounted (read-only) in the JobMaster and worker pods."""
CONFIG_FILE = "job.json"


@dataclass(frozen=True)
class JobRef:
    """Identity of the StreamJob that owns the objects."""

    name: str
    namespace: str
    uid: str


def labels_for(job: JobRef, component: str, *, attempt: int | None = None, job_id: str | None = None) -> dict[str, str]:
    """The labels of an object of ``job``; pods also carry their attempt and jobId."""
    labels = {
        NAME_LABEL: "streamjob",
        INSTANCE_LABEL: job.name,
        COMPONENT_LABEL: component,
        MANAGED_BY_LABEL: "streamjob-operator",
        JOB_LABEL: job.name,
    }
    if attempt is not None:
        labels[ATTEMPT_LABEL] = str(attempt)
    if job_id is not None:
        labels[JOB_ID_LABEL] = job_id
    return labels


def selector_for(job: JobRef) -> str:
    """Label selector of every pod and config map of ``job`` (all attempts)."""
    return f"{JOB_LABEL}={job.name},{NAME_LABEL}=streamjob"


def worker_selector(job: JobRef) -> str:
    """Label selector of ``job``'s worker pods (all attempts): ``status.selector`` of the scale subresource."""
    return f"{selector_for(job)},{COMPONENT_LABEL}={WORKER}"


def retained_selector(job: JobRef) -> str:
    """Label selector of the pods of ``job``'s failed attempts kept for their logs."""
    return f"{RETAINED_LABEL}={job.name},{NAME_LABEL}=streamjob"


def retained_labels(job: JobRef, until: str) -> dict[str, Any]:
    """The metadata patch that takes a pod out of its job (no round sees it) and keeps it until ``until``."""
    return {"labels": {JOB_LABEL: None, RETAINED_LABEL: job.name}, "annotations": {RETAINED_UNTIL: until}}


def detached_labels() -> dict[str, Any]:
    """The metadata patch that takes a pod out of its job before it is deleted (no round counts it again)."""
    return {"labels": {JOB_LABEL: None}}


def owner_reference(job: JobRef) -> dict[str, Any]:
    """Makes the StreamJob the controller owner: deleting it garbage-collects the object."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": job.name,
        "uid": job.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def jobmaster_pod_name(job: JobRef, attempt: int) -> str:
    """Name of the JobMaster pod of an attempt."""
    return f"{job.name}-jobmaster-{attempt}"


def worker_pod_name(job: JobRef, attempt: int, index: int) -> str:
    """Name of worker ``index`` of an attempt."""
    return f"{job.name}-worker-{attempt}-{index}"


def configmap_name(job: JobRef, attempt: int) -> str:
    """Name of the ConfigMap holding an attempt's job.json."""
    return f"{job.name}-config-{attempt}"


def service_name(job: JobRef) -> str:
    """Name of the JobMaster REST Service."""
    return f"{job.name}-rest"


def job_pod_selector(job: JobRef) -> dict[str, str]:
    """``matchLabels`` of every pod of ``job`` (all attempts), for NetworkPolicies."""
    return {NAME_LABEL: "streamjob", JOB_LABEL: job.name}


def secret_name(job: JobRef) -> str:
    """Name of the job's Secret, which carries the StreamJob's uid.

    A StreamJob deleted and created again under the same name thus never meets the old job's
    Secret (still awaiting garbage collection) with the old secret in it.
    """
    return f"{job.name}-secret-{job.uid[:8]}" if job.uid else f"{job.name}-secret"
