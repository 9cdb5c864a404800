"""The job configuration: what a JobMaster is told to run, and the checkpoint knobs.

Read once at start (``streamjob jobmaster --config job.json``, or built by ``streamjob run`` from
its flags) and passed down explicitly. The operator renders the same model into the job's
ConfigMap, so this module is the contract between the operator and the runtime. Values set here
override what the pipeline code sets (so a manifest can change the checkpoint interval without a
new image); values left ``None`` keep the code's choice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from streamjob.worker.errors import ConfigError

MAX_DURATION_MS = 2_147_483_647
"""The longest duration any knob takes (about 24.8 days); longer ones overflowed timers (OverflowError)."""

MAX_COUNT = 2_147_483_647
"""The largest count any knob takes (Flink's Integer.MAX_VALUE)."""

MAX_CHECKPOINT_ID = 2**63 - 1
"""The largest checkpoint id (Flink's Long.MAX_VALUE); ids start at 1."""

MAX_PARALLELISM = 32_768
"""Flink's upper bound of the number of key groups."""

MIN_INTERVAL_MS = 10
"""The shortest checkpoint interval (the CLI's ``--checkpoint-interval``, job.json, the CRD)."""

IntervalMs = Annotated[int, Field(ge=MIN_INTERVAL_MS, le=MAX_DURATION_MS)]
TimeoutMs = Annotated[int, Field(ge=1, le=MAX_DURATION_MS)]
DurationMs = Annotated[int, Field(ge=0, le=MAX_DURATION_MS)]
PositiveCount = Annotated[int, Field(ge=1, le=MAX_COUNT)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
CheckpointId = Annotated[int, Field(ge=1, le=MAX_CHECKPOINT_ID)]

UNALIGNED_NEEDS_ONE_CONCURRENT = "unaligned checkpoints need max_concurrent = 1, as in Flink"
"""The rule across checkpoint fields; the operator's CRD checks the same one (CEL) with this message.

It covers checkpoints the aligned timeout switches to unaligned: the timeout only applies with
unaligned checkpoints enabled (as in Flink); without them it is ignored, and concurrent checkpoints
stay allowed.
"""
UNALIGNED_OFF_IN_AT_LEAST_ONCE = (
    "unaligned checkpoints can only be used with mode EXACTLY_ONCE: they stay off in AT_LEAST_ONCE, "
    "which never aligns barriers (as in Flink)"
)
FORCE_WITHOUT_UNALIGNED = (
    "force_unaligned has no effect unless unaligned checkpoints are enabled: "
    "call enable_unaligned_checkpoints(True, force=True)"
)
ALIGNED_TIMEOUT_WITHOUT_UNALIGNED = (
    "aligned_timeout_ms has no effect unless unaligned checkpoints are enabled (checkpoints stay aligned, "
    "as in Flink): call enable_unaligned_checkpoints(True) or set checkpoint.unaligned=true"
)
"""Combinations a job runs with, with a warning (Flink's behaviour), instead of refusing to start."""


class CheckpointingMode(StrEnum):
    """EXACTLY_ONCE aligns barriers; AT_LEAST_ONCE never blocks an input and may replay records."""

    EXACTLY_ONCE = "EXACTLY_ONCE"
    AT_LEAST_ONCE = "AT_LEAST_ONCE"


class ExternalizedCheckpointCleanup(StrEnum):
    """What happens to retained checkpoints when the job is cancelled."""

    RETAIN_ON_CANCELLATION = "RETAIN_ON_CANCELLATION"
    DELETE_ON_CANCELLATION = "DELETE_ON_CANCELLATION"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class CheckpointSettings(_Frozen):
    """Flink's CheckpointConfig. Durations are milliseconds; ``interval_ms=None`` disables checkpoints."""

    interval_ms: IntervalMs | None = None
    mode: CheckpointingMode = CheckpointingMode.EXACTLY_ONCE
    timeout_ms: TimeoutMs = 600_000
    min_pause_ms: DurationMs = 0
    max_concurrent: PositiveCount = 1
    tolerable_failures: Count = 0
    unaligned: bool = False
    force_unaligned: bool = False
    aligned_timeout_ms: DurationMs = 0
    externalized_cleanup: ExternalizedCheckpointCleanup = ExternalizedCheckpointCleanup.RETAIN_ON_CANCELLATION
    retained: PositiveCount = 1
    incremental: bool = False
    local_recovery: bool = False
    id_of_ignored_in_flight_data: CheckpointId | None = None

    @model_validator(mode="after")
    def _check_modes(self) -> CheckpointSettings:
        if self.unaligned_active and self.max_concurrent > 1:
            raise ValueError(UNALIGNED_NEEDS_ONE_CONCURRENT)
        return self

    @property
    def unaligned_active(self) -> bool:
        """Whether checkpoints are unaligned: ``unaligned`` in EXACTLY_ONCE mode (Flink ignores it otherwise).

        ``force_unaligned`` (Flink: unaligned despite iterations or custom partitioners, which
        streamjob does not have) never turns them on by itself.
        """
        return self.unaligned and self.mode is CheckpointingMode.EXACTLY_ONCE

    @property
    def effective_aligned_timeout_ms(self) -> int:
        """The aligned-checkpoint timeout the tasks apply: ``aligned_timeout_ms`` with unaligned checkpoints active.

        As in Flink (``execution.checkpointing.aligned-checkpoint-timeout``), the timeout only has an
        effect when unaligned checkpoints are enabled; without them checkpoints stay aligned (0 here).
        """
        return self.aligned_timeout_ms if self.unaligned_active else 0

    @property
    def unaligned_from_start(self) -> bool:
        """Whether checkpoint barriers start unaligned: unaligned active and no aligned timeout (Flink's 0).

        With a timeout > 0 every checkpoint starts aligned and each task switches it to unaligned
        once its alignment took longer than the timeout. Savepoints are always aligned.
        """
        return self.unaligned_active and self.aligned_timeout_ms == 0

    def warnings(self) -> list[str]:
        """What the JobMaster logs at start about settings that take no effect."""
        found = []
        if self.unaligned and not self.unaligned_active:
            found.append(UNALIGNED_OFF_IN_AT_LEAST_ONCE)
        if self.force_unaligned and not self.unaligned:
            found.append(FORCE_WITHOUT_UNALIGNED)
        if self.aligned_timeout_ms > 0 and not self.unaligned:
            found.append(ALIGNED_TIMEOUT_WITHOUT_UNALIGNED)
        return found


class CheckpointOverrides(_Frozen):
    """Per-field overrides of the pipeline's CheckpointConfig; ``None`` keeps the code's value.

    The one definition of the checkpoint knobs a deployment may set: job.json's ``checkpoint``, the
    CLI's ``-D checkpoint.KEY`` and the operator's ``spec.checkpoint`` (which adds camelCase names).
    """

    interval_ms: IntervalMs | None = Field(default=None, description="Checkpoint interval in ms.")
    mode: CheckpointingMode | None = Field(default=None, description="EXACTLY_ONCE or AT_LEAST_ONCE.")
    timeout_ms: TimeoutMs | None = Field(default=None, description="A checkpoint not done by then fails.")
    min_pause_ms: DurationMs | None = Field(default=None, description="Minimum pause between checkpoints.")
    max_concurrent: PositiveCount | None = Field(default=None, description="Checkpoints in flight at once.")
    tolerable_failures: Count | None = Field(
        default=None, description="Consecutive checkpoint failures tolerated before the job fails."
    )
    unaligned: bool | None = Field(
        default=None, description="Unaligned checkpoints (EXACTLY_ONCE only; ignored with a warning otherwise)."
    )
    force_unaligned: bool | None = Field(
        default=None, description="With unaligned: keep them where Flink refuses them unforced (no such case here)."
    )
    aligned_timeout_ms: DurationMs | None = Field(
        default=None,
        description=(
            "With unaligned: checkpoints start aligned and switch to unaligned after this many ms "
            "(0: unaligned from the start); ignored with a warning without unaligned."
        ),
    )
    externalized_cleanup: ExternalizedCheckpointCleanup | None = Field(
        default=None, description="Keep or delete retained checkpoints when the job is cancelled."
    )
    retained: PositiveCount | None = Field(default=None, description="Completed checkpoints kept in storage.")
    incremental: bool | None = Field(default=None, description="Incremental checkpoints (hashmap and rocksdb).")
    local_recovery: bool | None = Field(default=None, description="Keep a local copy of state for recovery.")
    id_of_ignored_in_flight_data: CheckpointId | None = Field(
        default=None, description="On restore from this unaligned checkpoint id, drop its in-flight data."
    )

    def apply(self, base: CheckpointSettings) -> CheckpointSettings:
        """The code's settings with every non-None override laid over them (re-validated)."""
        overrides = {k: v for k, v in self.model_dump(mode="json").items() if v is not None}
        try:
            return CheckpointSettings.model_validate(base.model_dump() | overrides)
        except ValidationError as err:
            given = ", ".join(
                f"{k}={json.dumps(v)}" if not isinstance(v, str) else f"{k}={v}" for k, v in overrides.items()
            )
            raise ConfigError(
                f"the job's checkpoint settings with the overrides {given} are invalid: "
                f"{describe_validation_error(err)}"
            ) from err


class RestartStrategy(_Frozen):
    """Flink's restart strategies; in Kubernetes mode the operator applies the same policy to pods."""

    kind: Literal["none", "fixed-delay", "exponential-delay", "failure-rate"] = "fixed-delay"
    attempts: int = Field(default=10, ge=0, le=MAX_COUNT)
    delay_ms: int = Field(default=1_000, ge=0, le=MAX_DURATION_MS)
    max_delay_ms: int = Field(default=60_000, ge=0, le=MAX_DURATION_MS)
    multiplier: float = Field(default=2.0, ge=1.0, le=1000.0, allow_inf_nan=False)
    reset_after_ms: int = Field(default=600_000, ge=0, le=MAX_DURATION_MS)
    max_failures_per_interval: int = Field(default=1, ge=1, le=MAX_COUNT)
    """failure-rate: the job fails for good at this many failures within ``failure_rate_interval_ms``."""
    failure_rate_interval_ms: int = Field(default=60_000, ge=1, le=MAX_DURATION_MS)

    def delay_for(self, attempt: int, failure_times_ms: Sequence[float] = ()) -> int | None:
        """Milliseconds to wait before restart number ``attempt`` (1-based); None = give up.

        ``failure_times_ms``: when the failures so far happened (monotonic ms, this one last); the
        failure-rate strategy (Flink's) gives up once the last ``max_failures_per_interval`` of them
        lie within ``failure_rate_interval_ms``, and ignores ``attempts``.
        """
        if self.kind == "failure-rate":
            n = self.max_failures_per_interval
            recent = list(failure_times_ms[-n:])
            if len(recent) >= n and recent[-1] - recent[0] <= self.failure_rate_interval_ms:
                return None
            return self.delay_ms
        if self.kind == "none" or attempt > self.attempts:
            return None
        if self.kind == "fixed-delay":
            return self.delay_ms
        return int(min(self.max_delay_ms, self.delay_ms * self.multiplier ** (attempt - 1)))


class BufferDebloat(_Frozen):
    """Buffer debloating (Flink's ``taskmanager.network.memory.buffer-debloat.*``; ``runtime/debloat.py``).

    Each channel caps its batches so that its credit window holds about ``target_ms`` of its
    consumer's measured throughput: behind a slow consumer an aligned barrier waits about that
    long, and backpressure reaches the producers about that fast. A consumer that keeps up gets
    batches of the configured buffer size (``env.set_buffer_size``).
    """

    enabled: bool = True
    """Off: every batch is the buffer size, and a slow consumer queues 8 of them per channel."""
    target_ms: int = Field(default=1000, ge=10, le=MAX_DURATION_MS)
    """In-flight data per channel, as time of the consumer's throughput (Flink's ``target``, 1 s)."""
    period_ms: int = Field(default=100, ge=10, le=MAX_DURATION_MS)
    """How often a channel's throughput is sampled (smoothed over about 3 samples)."""
    min_batch_size: int = Field(default=1, ge=1, le=MAX_COUNT)
    """Fewest records per batch however slow the consumer (a batch of 1 still costs one credit)."""


class S3Options(_Frozen):
    """Non-secret S3 settings; credentials come from the environment (a Secret on Kubernetes)."""

    endpoint_url: str | None = None
    region: str | None = None
    path_style: bool | None = None


SECRET_CERT_KEY = "tls.crt"
SECRET_KEY_KEY = "tls.key"
SECRET_CA_KEY = "ca.crt"
"""The keys of a Kubernetes TLS Secret as cert-manager writes them (also the files ``--tls-dir`` expects)."""


class TlsSettings(BaseModel):
    """PEM files of one TLS endpoint: this side's certificate chain and key, and the CA that signs its peers.

    ``rest_client_auth`` (REST only): require a client certificate of the CA; the internal planes
    always require one.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    cert_file: str
    key_file: str
    ca_file: str
    rest_client_auth: bool = False

    @classmethod
    def from_dir(cls, directory: str | Path) -> TlsSettings:
        """The files of a Kubernetes TLS Secret mounted at ``directory`` (``tls.crt``, ``tls.key``, ``ca.crt``)."""
        d = Path(directory)
        return cls(cert_file=str(d / SECRET_CERT_KEY), key_file=str(d / SECRET_KEY_KEY), ca_file=str(d / SECRET_CA_KEY))


class JobConfig(_Frozen):
    """Everything a JobMaster needs to run one attempt of a job."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)
    namespace: str = "local"
    job_id: str | None = None
    attempt: int = Field(default=0, ge=0, le=MAX_COUNT)
    entrypoint: str
    args: list[str] = Field(default_factory=list)
    parallelism: int | None = Field(default=None, ge=1, le=MAX_PARALLELISM)
    max_parallelism: int | None = Field(default=None, ge=1, le=MAX_PARALLELISM)
    state_backend: Literal["hashmap", "rocksdb"] | None = None
    checkpoint: CheckpointOverrides = Field(default_factory=CheckpointOverrides)
    checkpoints_uri: str | None = None
    savepoints_uri: str | None = None
    allowed_savepoint_roots: list[str] = Field(default_factory=list)
    """Roots besides ``savepoints_uri`` that ``POST /savepoints {"target"}`` may write under (none by default)."""
    restore_from: str | None = None
    allow_non_restored_state: bool = False
    restart: RestartStrategy | None = None
    restart_in_place: bool = True
    """A failed attempt is restarted by this JobMaster (its slots released, lost ones replaced); False: it exits."""
    workers: int = Field(default=1, ge=1, le=MAX_PARALLELISM)
    slots_per_worker: int = Field(default=1, ge=1, le=MAX_PARALLELISM)
    rest_host: str = "0.0.0.0"
    rest_port: int = Field(default=8081, ge=0, le=65535)
    control_port: int = Field(default=6123, ge=0, le=65535)
    """The slots' control channel (``jobmaster/control.py``), on ``rest_host``; 0 = any free port."""
    max_frame_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024, le=1024 * 1024 * 1024)
    """Largest record batch on the data plane (encoded); a larger one fails its task with the reason."""
    buffer_debloat: BufferDebloat = Field(default_factory=BufferDebloat)
    """In-flight data per channel bounded by time (``streamjob run -D buffer_debloat.KEY=VALUE``)."""
    data_host: str | None = None
    s3: S3Options = Field(default_factory=S3Options)
    worker_register_timeout_ms: int = Field(default=120_000, ge=1000, le=MAX_DURATION_MS)
    internal_tls: TlsSettings | None = None
    """Mutual TLS on the control and data ports (``protocol/tls.py``); ``None``: plain TCP, HMAC handshake only."""
    rest_tls: TlsSettings | None = None
    """HTTPS for the REST API; ``None``: plain HTTP."""

    @model_validator(mode="after")
    def _check(self) -> JobConfig:
        if self.parallelism and self.max_parallelism and self.parallelism > self.max_parallelism:
            raise ValueError(
                f"parallelism {self.parallelism} exceeds max_parallelism {self.max_parallelism}; "
                "raise max_parallelism or lower parallelism"
            )
        return self

    @field_validator("allowed_savepoint_roots")
    @classmethod
    def _check_roots(cls, roots: list[str]) -> list[str]:
        from streamjob.worker.storage.uri import parse_storage_uri  # storage imports heavier modules

        for root in roots:
            try:
                parse_storage_uri(root)
            except ConfigError as err:
                raise ValueError(str(err)) from None
        return roots

    @property
    def total_slots(self) -> int:
        """Slots the JobMaster waits for before deploying tasks."""
        return self.workers * self.slots_per_worker


def load_job_config(path: Path) -> JobConfig:
    """Reads and validates a job.json; every problem becomes one ConfigError naming the field."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ConfigError(f"job config {path} does not exist; pass --config with the rendered job.json") from err
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"job config {path} is not readable JSON: {err}") from err
    return parse_job_config(raw, source=str(path))


def parse_job_config(raw: object, *, source: str) -> JobConfig:
    """Validates a decoded job config; errors name the offending field."""
    try:
        return JobConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"invalid job config {source}: {describe_validation_error(err)}") from err


def describe_validation_error(err: ValidationError) -> str:
    """``field.path: message`` per problem, ``; ``-joined for one line; a model-wide check gives its message alone."""
    parts = []
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ") if item["type"] == "value_error" else item["msg"]
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)
