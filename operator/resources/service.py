"""Builds the JobMaster REST Service (``<name>-rest``) for users and tools inside the cluster.

The operator itself talks to the JobMaster by pod IP (no cluster DNS needed).
"""

from __future__ import annotations

from typing import Any

from streamjob.operator.resources.labels import (
    COMPONENT_LABEL,
    INSTANCE_LABEL,
    JOBMASTER,
    NAME_LABEL,
    REST_PORT,
    JobRef,
    labels_for,
    owner_reference,
    service_name,
)


def build_service(job: JobRef) -> dict[str, Any]:
    """A ClusterIP Service selecting the job's JobMaster pod, whatever its attempt."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(job),
            "namespace": job.namespace,
            "labels": labels_for(job, "rest"),
            "ownerReferences": [owner_reference(job)],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {NAME_LABEL: "streamjob", INSTANCE_LABEL: job.name, COMPONENT_LABEL: JOBMASTER},
            "ports": [{"name": "rest", "port": REST_PORT, "targetPort": "rest", "protocol": "TCP"}],
        },
    }
