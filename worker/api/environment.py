"""The execution environment: the entry of every pipeline, and its checkpoint configuration.

``StreamExecutionEnvironment.get_execution_environment()`` starts a pipeline; the sources it
creates return ``DataStream`` objects. ``execute()`` hands the built pipeline to the
``PipelineExecutor`` in effect: the loader's, which captures it (when streamjob loads the
entrypoint in the JobMaster, a worker or ``streamjob run``), else the local MiniCluster (a script
run with ``python job.py``), found through the ``streamjob.executors`` entry point because the API
sits below the runtime that runs it and never imports it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from importlib.metadata import entry_points
from typing import Any, Protocol

from pydantic import ValidationError

from streamjob.worker.api.datastream import DataStream
from streamjob.worker.api.sources import (
    CollectionSource,
    DataGeneratorSource,
    NumberSequenceSource,
    Source,
    SourceFunction,
    emits_timestamps,
)
from streamjob.worker.api.watermarks import WatermarkStrategy
from streamjob.worker.config import (
    CheckpointingMode,
    CheckpointSettings,
    ExternalizedCheckpointCleanup,
    RestartStrategy,
    describe_validation_error,
)
from streamjob.worker.errors import ConfigError, EntrypointError
from streamjob.worker.graph.transformations import Kind, Transformation
from streamjob.worker.state.serializers import Serializer

DEFAULT_MAX_PARALLELISM = 128


def _ms(value: int | float | timedelta, what: str) -> int:
    if isinstance(value, timedelta):
        return int(value.total_seconds() * 1000)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{what} must be a non-negative number of milliseconds or a timedelta, got {value!r}")
    return int(value)


class CheckpointConfig:
    """Flink's CheckpointConfig, with the same knobs in snake_case."""

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}
        self.storage: str | None = None

    def _set(self, key: str, value: Any) -> None:
        trial = CheckpointSettings().model_dump() | self._values | {key: value}
        try:
            CheckpointSettings.model_validate(trial)
        except ValidationError as err:
            problem = describe_validation_error(err)
            raise ConfigError(f"checkpoint config {key}={value!r} is invalid: {problem}") from err
        self._values[key] = value

    # -- Flink's setters ----------------------------------------------------------------------
    def set_checkpoint_interval(self, interval: int | timedelta) -> None:
        """Triggers a checkpoint every ``interval`` milliseconds."""
        self._set("interval_ms", _ms(interval, "checkpoint interval"))

    def set_checkpointing_mode(self, mode: CheckpointingMode) -> None:
        """EXACTLY_ONCE (aligned or unaligned barriers) or AT_LEAST_ONCE (no alignment)."""
        self._set("mode", CheckpointingMode(mode))

    def set_checkpoint_timeout(self, timeout: int | timedelta) -> None:
        """Aborts a checkpoint that has not completed after ``timeout``."""
        self._set("timeout_ms", _ms(timeout, "checkpoint timeout"))

    def set_min_pause_between_checkpoints(self, pause: int | timedelta) -> None:
        """The least time between the end of one checkpoint and the start of the next."""
        self._set("min_pause_ms", _ms(pause, "min pause between checkpoints"))

    def set_max_concurrent_checkpoints(self, count: int) -> None:
        """How many checkpoints may be in progress at once."""
        self._set("max_concurrent", count)

    def set_tolerable_checkpoint_failure_number(self, count: int) -> None:
        """Consecutive checkpoint failures tolerated before the job fails over."""
        self._set("tolerable_failures", count)

    def set_externalized_checkpoint_cleanup(self, cleanup: ExternalizedCheckpointCleanup) -> None:
        """Keep (RETAIN_ON_CANCELLATION) or delete retained checkpoints when the job is cancelled."""
        self._set("externalized_cleanup", ExternalizedCheckpointCleanup(cleanup))

    enable_externalized_checkpoints = set_externalized_checkpoint_cleanup

    def set_checkpoint_storage(self, uri: str) -> None:
        """Where checkpoints go: ``file:///path`` or ``s3://bucket/prefix`` (kept in its normal form)."""
        from streamjob.worker.storage.uri import parse_storage_uri

        self.storage = str(parse_storage_uri(uri))

    def enable_unaligned_checkpoints(self, enabled: bool = True, force: bool | None = None) -> None:
        """Barriers overtake in-flight data, which is stored with the checkpoint (EXACTLY_ONCE only).

        In AT_LEAST_ONCE mode the setting is ignored with a warning at start, as in Flink.
        ``force``: see ``set_force_unaligned_checkpoints``.
        """
        self._set("unaligned", enabled)
        if force is not None:
            self.set_force_unaligned_checkpoints(force)

    def set_force_unaligned_checkpoints(self, force: bool) -> None:
        """With unaligned checkpoints on, keep them where Flink refuses them unforced.

        Flink refuses unaligned checkpoints for iterative jobs and custom partitioners unless forced;
        streamjob has neither, so every unaligned checkpoint is unaligned on every edge already.
        Alone, the flag enables nothing (a warning at start says so).
        """
        self._set("force_unaligned", force)

    def set_aligned_checkpoint_timeout(self, timeout: int | timedelta) -> None:
        """Switch an aligned checkpoint to unaligned once alignment takes longer than this."""
        self._set("aligned_timeout_ms", _ms(timeout, "aligned checkpoint timeout"))

    set_alignment_timeout = set_aligned_checkpoint_timeout

    def set_num_retained_checkpoints(self, count: int) -> None:
        """How many completed checkpoints to keep (``state.checkpoints.num-retained``)."""
        self._set("retained", count)

    def set_local_recovery(self, enabled: bool) -> None:
        """Keep a local copy of each subtask's last snapshot and restore from it when possible."""
        self._set("local_recovery", enabled)

    def set_checkpoint_id_of_ignored_in_flight_data(self, checkpoint_id: int) -> None:
        """On restore from this unaligned checkpoint, drop its in-flight data instead of replaying it."""
        self._set("id_of_ignored_in_flight_data", checkpoint_id)

    # -- getters --------------------------------------------------------------------------------
    def is_checkpointing_enabled(self) -> bool:
        """Whether periodic checkpoints are on."""
        return self._values.get("interval_ms") is not None

    def settings(self) -> CheckpointSettings:
        """The validated settings the coordinator runs with."""
        return CheckpointSettings.model_validate(CheckpointSettings().model_dump() | self._values)


@dataclass(frozen=True)
class StateBackend:
    """Where keyed state lives while the job runs."""

    kind: str
    incremental: bool = False


def HashMapStateBackend(incremental: bool = False) -> StateBackend:
    """State as Python objects in memory; snapshots are copied then written asynchronously.

    ``incremental``: a checkpoint uploads only the chunks of key groups written since the last
    completed one and references the others' shared files (as ``EmbeddedRocksDBStateBackend``).
    """
    return StateBackend("hashmap", incremental)


def EmbeddedRocksDBStateBackend(incremental: bool = False) -> StateBackend:
    """State in a local RocksDB (larger than memory); ``incremental`` uploads only changes."""
    return StateBackend("rocksdb", incremental)


class RestartStrategies:
    """Factories of restart strategies, as Flink's ``RestartStrategies``."""

    @staticmethod
    def fixed_delay_restart(restart_attempts: int, delay_between_attempts: int | timedelta) -> RestartStrategy:
        """Up to ``restart_attempts`` restarts, waiting the same delay before each."""
        return RestartStrategy(
            kind="fixed-delay", attempts=restart_attempts, delay_ms=_ms(delay_between_attempts, "restart delay")
        )

    @staticmethod
    def exponential_delay_restart(
        initial_backoff: int | timedelta,
        max_backoff: int | timedelta,
        backoff_multiplier: float = 2.0,
        reset_backoff_threshold: int | timedelta = 600_000,
        attempts: int = 2**31 - 1,
    ) -> RestartStrategy:
        """Restarts with a delay multiplied after each failure, up to ``max_backoff``."""
        return RestartStrategy(
            kind="exponential-delay",
            attempts=attempts,
            delay_ms=_ms(initial_backoff, "initial backoff"),
            max_delay_ms=_ms(max_backoff, "max backoff"),
            multiplier=backoff_multiplier,
            reset_after_ms=_ms(reset_backoff_threshold, "reset threshold"),
        )

    @staticmethod
    def failure_rate_restart(
        max_failures_per_interval: int,
        failure_rate_interval: int | timedelta,
        delay_interval: int | timedelta,
    ) -> RestartStrategy:
        """Restarts after ``delay_interval`` while failures stay rarer than Flink's failure rate.

        At ``max_failures_per_interval`` failures within ``failure_rate_interval`` the job fails
        for good; failures spaced further apart keep restarting it.
        """
        return RestartStrategy(
            kind="failure-rate",
            max_failures_per_interval=max_failures_per_interval,
            failure_rate_interval_ms=_ms(failure_rate_interval, "failure rate interval"),
            delay_ms=_ms(delay_interval, "restart delay"),
        )

    @staticmethod
    def no_restart() -> RestartStrategy:
        """Fail the job on the first failure."""
        return RestartStrategy(kind="none", attempts=0)


EXECUTORS_GROUP = "streamjob.executors"
"""The entry-point group of the executor ``execute()`` uses by default (``local``: the MiniCluster)."""


class PipelineExecutor(Protocol):
    """What ``env.execute()`` hands the built pipeline to.

    Injected by whoever runs the job's code (``executor().set(...)``): ``loader.load_job`` sets one
    that captures the pipeline instead of running it; tests may set their own. Without one,
    ``execute()`` runs the job on the local MiniCluster (the ``local`` entry point of
    ``EXECUTORS_GROUP``, ``streamjob.worker.local.run_environment``).
    """

    def __call__(
        self, env: StreamExecutionEnvironment, *, job_name: str, restore: str | None, **options: Any
    ) -> Any: ...


_executor: contextvars.ContextVar[PipelineExecutor | None] = contextvars.ContextVar("streamjob_executor", default=None)


def executor() -> contextvars.ContextVar[PipelineExecutor | None]:
    """The executor ``execute()`` hands the pipeline to in this context; None: the local MiniCluster."""
    return _executor


def _default_executor() -> PipelineExecutor:
    found = entry_points(group=EXECUTORS_GROUP, name="local")
    if not found:
        raise EntrypointError(
            f"env.execute() found no executor: the entry point '{EXECUTORS_GROUP}: local' is missing, so "
            "streamjob is not installed as a package; install it (pip install -e .) or run `streamjob run job.py`"
        )
    loaded: PipelineExecutor = next(iter(found)).load()
    return loaded


class StreamExecutionEnvironment:
    """Builds a pipeline and holds its job-wide settings."""

    def __init__(self) -> None:
        self.transformations: list[Transformation] = []
        self.parallelism = 1
        self.max_parallelism = DEFAULT_MAX_PARALLELISM
        self.checkpoint_config = CheckpointConfig()
        self.state_backend = HashMapStateBackend()
        self.restart_strategy: RestartStrategy | None = None
        self.batch_size = 4096
        self.job_name = "streamjob"
        self.restore_path: str | None = None
        """The snapshot ``execute()`` restores from when nothing else names one (``execute_from_savepoint``)."""
        self.allowed_types: set[type] = set()
        self.internal_state_serializer: Serializer | None = None

    @staticmethod
    def get_execution_environment() -> StreamExecutionEnvironment:
        """A new environment."""
        return StreamExecutionEnvironment()

    # -- job-wide settings -------------------------------------------------------------------------
    def set_parallelism(self, parallelism: int) -> StreamExecutionEnvironment:
        """Default parallelism of every operator."""
        if not isinstance(parallelism, int) or parallelism < 1:
            raise ConfigError(f"parallelism must be an integer >= 1, got {parallelism!r}")
        self.parallelism = parallelism
        return self

    def get_parallelism(self) -> int:
        """Default parallelism of every operator."""
        return self.parallelism

    def set_max_parallelism(self, max_parallelism: int) -> StreamExecutionEnvironment:
        """Number of key groups: the upper bound of any future rescale (default 128)."""
        if not isinstance(max_parallelism, int) or not 1 <= max_parallelism <= 32768:
            raise ConfigError(f"max parallelism must be an integer in 1..32768, got {max_parallelism!r}")
        self.max_parallelism = max_parallelism
        return self

    def enable_checkpointing(
        self, interval: int | timedelta, mode: CheckpointingMode = CheckpointingMode.EXACTLY_ONCE
    ) -> StreamExecutionEnvironment:
        """Periodic checkpoints every ``interval`` milliseconds in ``mode``."""
        self.checkpoint_config.set_checkpoint_interval(interval)
        self.checkpoint_config.set_checkpointing_mode(mode)
        return self

    def get_checkpoint_config(self) -> CheckpointConfig:
        """The checkpoint knobs."""
        return self.checkpoint_config

    def set_state_backend(self, backend: StateBackend) -> StreamExecutionEnvironment:
        """``HashMapStateBackend()`` (default) or ``EmbeddedRocksDBStateBackend()``."""
        if not isinstance(backend, StateBackend):
            raise ConfigError("set_state_backend takes HashMapStateBackend() or EmbeddedRocksDBStateBackend()")
        self.state_backend = backend
        return self

    def set_restart_strategy(self, strategy: RestartStrategy) -> StreamExecutionEnvironment:
        """What to do when a task fails: see ``RestartStrategies``."""
        self.restart_strategy = strategy
        return self

    def set_buffer_size(self, records: int) -> StreamExecutionEnvironment:
        """Records per network batch (throughput vs latency)."""
        self.batch_size = max(1, int(records))
        return self

    def register_type(self, cls: type) -> StreamExecutionEnvironment:
        """Allows instances of ``cls`` in records exchanged between workers."""
        self.allowed_types.add(cls)
        return self

    def set_internal_state_serializer(self, serializer: Serializer | None) -> StreamExecutionEnvironment:
        """The serializer of the state the runtime keeps for the job (window contents); None: the default.

        The default, ``SafeSerializer``, stores built-in values and the job's own classes (``docs/user-guide.md``);
        ``PickleSerializer()`` stores anything picklable, and restores by unpickling: only with trusted storage.
        """
        if serializer is not None and not isinstance(serializer, Serializer):
            raise ConfigError(
                f"set_internal_state_serializer takes a streamjob Serializer (SafeSerializer(), PickleSerializer()), "
                f"got {type(serializer).__name__}"
            )
        self.internal_state_serializer = serializer
        return self

    # -- sources ----------------------------------------------------------------------------------
    def _add(self, kind: Kind, name: str, function: Any, **options: Any) -> Transformation:
        t = Transformation(
            id=len(self.transformations) + 1, kind=kind, name=name, function=function, options=dict(options)
        )
        self.transformations.append(t)
        return t

    def from_source(
        self,
        source: Source,
        source_name: str | WatermarkStrategy = "Source",
        name: str | None = None,
        *,
        watermark_strategy: WatermarkStrategy | None = None,
    ) -> DataStream:
        """A stream from a pull-based ``Source``.

        With a ``WatermarkStrategy`` (Flink's argument order ``from_source(source, strategy, "name")``,
        or ``watermark_strategy=``) its records carry event time.
        """
        if isinstance(source_name, WatermarkStrategy):
            watermark_strategy, source_name = source_name, name or "Source"
        if not isinstance(source, Source):
            raise ConfigError(f"from_source takes a streamjob Source, got {type(source).__name__}")
        if watermark_strategy is not None and not isinstance(watermark_strategy, WatermarkStrategy):
            raise ConfigError(
                "from_source: the watermark strategy must be a WatermarkStrategy, "
                f"got {type(watermark_strategy).__name__}"
            )
        if watermark_strategy is not None and watermark_strategy.assigner is None:
            raise ConfigError(
                "from_source: the WatermarkStrategy has no timestamp assigner and a Source gives records no "
                "timestamp: add .with_timestamp_assigner(lambda record: record.timestamp_ms)"
            )
        t = self._add(Kind.SOURCE, source_name, source)
        if source.max_parallelism == 1:
            t.parallelism = 1
            t.max_parallelism = 1
        stream = DataStream(self, t)
        if watermark_strategy is not None:
            # Per-split watermarks inside the source (runtime/split_watermarks.py), as Flink's sources.
            t.options["watermarks"] = watermark_strategy
            stream._timestamps = watermark_strategy
        return stream

    def add_source(self, source: SourceFunction | Source, source_name: str = "Custom Source") -> DataStream:
        """A stream from a legacy ``SourceFunction`` (run/cancel) or a ``Source``."""
        if isinstance(source, Source):
            return self.from_source(source, source_name)
        if not isinstance(source, SourceFunction):
            raise ConfigError(f"add_source takes a SourceFunction or Source, got {type(source).__name__}")
        t = self._add(Kind.LEGACY_SOURCE, source_name, source)
        if not source.parallel:
            t.parallelism = 1
            t.max_parallelism = 1
        stream = DataStream(self, t)
        if emits_timestamps(source):
            # collect_with_timestamp / emit_watermark: the records are (timestamp, value) pairs (api/stamped.py)
            t.options["stamped_source"] = True
            stream._stamp_output()
        return stream

    def from_collection(self, collection: Iterable[Any]) -> DataStream:
        """The elements of ``collection`` in order (non-parallel)."""
        return self.from_source(CollectionSource(list(collection)), "Collection Source")

    def from_elements(self, *elements: Any) -> DataStream:
        """The given elements in order (non-parallel)."""
        return self.from_collection(elements)

    def from_sequence(self, start: int, end: int) -> DataStream:
        """The numbers ``start..end`` inclusive, in parallel."""
        return self.from_source(NumberSequenceSource(start, end), "Sequence Source")

    def from_generator(
        self, generator: Callable[[int], Any], count: int | None = None, records_per_second: float | None = None
    ) -> DataStream:
        """Records ``generator(i)``; unbounded when ``count`` is None; optionally throttled."""
        return self.from_source(DataGeneratorSource(generator, count, records_per_second), "Generator Source")

    def read_text_file(self, uri: str, monitor_interval_ms: int | None = None) -> DataStream:
        """Lines of the files under a ``file://`` directory or ``s3://`` prefix (continuous if monitored)."""
        from streamjob.worker.api.file_source import FileSource

        return self.from_source(FileSource(uri, monitor_interval_ms=monitor_interval_ms), "File Source")

    # -- running -------------------------------------------------------------------------------
    def execute(self, job_name: str = "streamjob", *, restore: str | None = None, **local: Any) -> Any:
        """Runs the job: hands it to the injected executor (see ``PipelineExecutor``), else runs it locally.

        ``restore`` (else ``restore_path``): the savepoint or checkpoint to start from. ``streamjob run
        --restore`` and the operator's own restore (an upgrade, a failover, ``initialSavepointPath``) take
        precedence over it: the code's choice only applies to a job's first start.
        """
        self.job_name = job_name
        run = _executor.get() or _default_executor()
        return run(self, job_name=job_name, restore=restore if restore is not None else self.restore_path, **local)

    def execute_from_savepoint(self, savepoint_path: str, job_name: str = "streamjob") -> Any:
        """Starts the job from a savepoint (the seed's ``executeFromSavepoint``).

        Called before the pipeline is built (the seed's order: this call, then the pipeline, then
        ``execute(name)``), it only records the savepoint for that ``execute``; called on a built
        pipeline, it runs it from the savepoint at once.
        """
        if not isinstance(savepoint_path, str) or not savepoint_path.strip():
            raise ConfigError(
                f"execute_from_savepoint: savepoint_path must be a snapshot URI such as "
                f"'s3://bucket/savepoints/savepoint-1' or 'file:///path/savepoint-1', got {savepoint_path!r}"
            )
        self.restore_path = savepoint_path.strip()
        if not self.transformations:
            return None
        return self.execute(job_name, restore=self.restore_path)
