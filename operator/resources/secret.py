"""The per-StreamJob Secret and the derivation of the job's secret from the operator key (pure).

A job's secret is HMAC-SHA256(operator key, ``streamjob/job-secret/v1/<namespace>/<name>/<uid>``),
hex: deterministic, so the operator re-derives it whenever it needs it (the REST token it sends
to the JobMaster) and never reads a Secret back, and creating the Secret again is harmless. It
is distinct per StreamJob object (the uid), so a StreamJob re-created under the same name gets a
new secret. The Secret holds ``job-secret`` (JobMaster and worker pods receive it as
``STREAMJOB_JOB_SECRET`` through ``secretKeyRef``) and ``rest-token`` (for users and tools that
call the REST API; ``derive_rest_token`` of the secret). Owned by the StreamJob, so deleting it
garbage-collects the Secret. Created by ``controller`` through ``k8s``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from streamjob.operator.resources.labels import JobRef, labels_for, owner_reference, secret_name
from streamjob.worker.protocol.auth import derive_rest_token

JOB_SECRET_KEY = "job-secret"
REST_TOKEN_KEY = "rest-token"
_LABEL = "streamjob/job-secret/v1"


def derive_job_secret(operator_key: str, job: JobRef) -> str:
    """The job's secret, derived from the operator key and the StreamJob's identity (hex)."""
    if not operator_key:
        raise ValueError("no operator key: set STREAMJOB_OPERATOR_KEY (the job secret is derived from it)")
    message = f"{_LABEL}/{job.namespace}/{job.name}/{job.uid}".encode()
    return hmac.new(operator_key.encode(), message, hashlib.sha256).hexdigest()


def job_rest_token(operator_key: str, job: JobRef) -> str:
    """The bearer token the operator sends on the job's REST calls (derived, never read)."""
    return derive_rest_token(derive_job_secret(operator_key, job))


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def build_secret(job: JobRef, job_secret: str) -> dict[str, Any]:
    """The Secret ``<name>-secret-<uid8>`` with the job secret and the REST token derived from it."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": secret_name(job),
            "namespace": job.namespace,
            "labels": labels_for(job, "secret"),
            "ownerReferences": [owner_reference(job)],
        },
        "data": {JOB_SECRET_KEY: _b64(job_secret), REST_TOKEN_KEY: _b64(derive_rest_token(job_secret))},
    }
