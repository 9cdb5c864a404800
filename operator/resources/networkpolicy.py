"""The NetworkPolicies of a StreamJob (pure): its pods accept traffic only from where it must come.

Two policies, both owned by the StreamJob and selecting pods by the job's labels (all attempts):

- ``<name>-internal`` selects every pod of the job and admits any port from pods of the same job
  in the same namespace: the JobMaster's control port (6123) and every port of a worker (data
  ports are ephemeral, so they cannot be listed);
- ``<name>-rest`` selects the JobMaster pod and admits its REST port (8081) from the operator's
  namespace (``namespaceSelector`` on ``kubernetes.io/metadata.name``) and from the extra peers
  of the chart value ``networkPolicy.restFrom``.

NetworkPolicies add up, so everything else is refused once a pod is selected. Egress is left
open (storage, Kafka and the like are the job's business). Enforced only by a CNI that
implements NetworkPolicy. Created by ``controller`` unless ``networkPolicy.enabled`` is false.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streamjob.operator.resources.labels import (
    COMPONENT_LABEL,
    JOBMASTER,
    REST_PORT,
    JobRef,
    job_pod_selector,
    labels_for,
    owner_reference,
)

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def _policy(job: JobRef, suffix: str, selector: dict[str, str], ingress: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": f"{job.name}-{suffix}",
            "namespace": job.namespace,
            "labels": labels_for(job, "network-policy"),
            "ownerReferences": [owner_reference(job)],
        },
        "spec": {"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress"], "ingress": ingress},
    }


def build_network_policies(
    job: JobRef, *, operator_namespace: str | None, rest_from: Sequence[dict[str, Any]] = ()
) -> list[dict[str, Any]]:
    """The job's two NetworkPolicies.

    With no operator namespace and no ``rest_from`` the REST port admits nobody from outside the
    job (the operator then cannot reach it: give one of them).
    """
    same_job = {"podSelector": {"matchLabels": job_pod_selector(job)}}
    internal = _policy(job, "internal", job_pod_selector(job), [{"from": [same_job]}])
    peers: list[dict[str, Any]] = []
    if operator_namespace:
        peers.append({"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: operator_namespace}}})
    peers += [dict(peer) for peer in rest_from]
    jobmaster = {**job_pod_selector(job), COMPONENT_LABEL: JOBMASTER}
    rest_rule: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": REST_PORT}]}
    if peers:
        rest_rule["from"] = peers
    rest = _policy(job, "rest", jobmaster, [rest_rule] if peers else [])
    return [internal, rest]
