"""Pure builders of the Kubernetes objects of one StreamJob attempt (no I/O).

``k8s`` creates what these return; unit tests assert on the returned dicts with no cluster.
"""

from streamjob.operator.resources.configmap import Attempt, build_configmap, render_job_config
from streamjob.operator.resources.labels import JobRef, labels_for, owner_reference, selector_for
from streamjob.operator.resources.pods import build_jobmaster_pod, build_worker_pod, build_worker_pods
from streamjob.operator.resources.service import build_service

__all__ = [
    "Attempt",
    "JobRef",
    "build_configmap",
    "build_jobmaster_pod",
    "build_service",
    "build_worker_pod",
    "build_worker_pods",
    "labels_for",
    "owner_reference",
    "render_job_config",
    "selector_for",
]
