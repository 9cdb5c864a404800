"""The runtime's typed error tree.

Every error a user can meet carries a message that names the problem and the fix; low-level
errors (OSError, botocore, aiohttp) are wrapped ``from`` the original at the adapter that met them.
The CLI prints ``str(error)`` and exits non-zero without a traceback.
"""

from __future__ import annotations


class StreamJobError(Exception):
    """Base of every error streamjob raises on purpose."""

    exit_code = 1


class ConfigError(StreamJobError):
    """A configuration value, flag or spec field is invalid; the message names it and the fix."""

    exit_code = 2


class EntrypointError(StreamJobError):
    """The job's entrypoint cannot be loaded or does not build a pipeline."""

    exit_code = 2


class PipelineError(StreamJobError):
    """The pipeline is malformed (missing or duplicate uid, bad parallelism, ...)."""

    exit_code = 2


class StorageError(StreamJobError):
    """Checkpoint storage is unreachable, unwritable or holds something unexpected."""

    exit_code = 3


class MetadataError(StorageError):
    """A ``_metadata`` file is missing, corrupted or of an unsupported format version."""


class RestoreError(StreamJobError):
    """A snapshot cannot be restored into this job (uid mismatch, bad parallelism, ...)."""

    exit_code = 4


class CorruptStateError(StorageError, RestoreError):
    """A restore input is missing, damaged or does not decode.

    Restore inputs are state files, in-flight data, and the output that a snapshot's pre-committed
    transactions name. Reading it again gives the same answer, so a restore that meets this is never retried: the job
    fails at once with exit code 3 (``StorageError``'s) and names the file and an older snapshot to use.
    """


class SerializationError(StreamJobError):
    """A value cannot be encoded or decoded by its declared serializer."""


class CheckpointError(StreamJobError):
    """A checkpoint failed; carries the reason reported to the coordinator."""


class JobFailedError(StreamJobError):
    """The job failed and the restart strategy gave up."""

    exit_code = 5
