"""The operator's typed error tree.

Adapters (``k8s``, ``jobmaster_client``, ``checkpoints``) wrap low-level errors (kubernetes
``ApiException``, aiohttp, the storage layer) ``from`` the original into these; ``handlers`` maps
them to kopf's Temporary/PermanentError. Messages name the StreamJob and what to do.
"""

from __future__ import annotations


class OperatorError(Exception):
    """Base of every error the operator raises on purpose."""

    retry_after: float | None = 5.0


class SpecError(OperatorError):
    """The StreamJob spec is invalid; retrying will not help until the user edits it."""

    retry_after = None


class KubernetesError(OperatorError):
    """A Kubernetes API call failed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotFoundError(KubernetesError):
    """The object does not exist (HTTP 404)."""


class ConflictError(KubernetesError):
    """The object changed or already exists (HTTP 409)."""


class JobMasterError(OperatorError):
    """The JobMaster REST API could not be reached or answered with an error."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class StorageUnavailableError(OperatorError):
    """Checkpoint storage could not be listed or read."""
