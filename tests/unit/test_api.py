"""The DataStream API: config knobs fail with the field named, and sources resume exactly from their splits."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from streamjob.worker.api import (
    CheckpointingMode,
    CollectionSource,
    DataGeneratorSource,
    EmbeddedRocksDBStateBackend,
    ExternalizedCheckpointCleanup,
    NumberSequenceSource,
    RestartStrategies,
    Source,
    SourceReader,
    SourceReaderContext,
    StreamExecutionEnvironment,
)
from streamjob.worker.cli_values import parse_duration_ms
from streamjob.worker.config import (
    FORCE_WITHOUT_UNALIGNED,
    UNALIGNED_OFF_IN_AT_LEAST_ONCE,
    CheckpointOverrides,
    CheckpointSettings,
    parse_job_config,
)
from streamjob.worker.errors import ConfigError, PipelineError
from streamjob.worker.state.operator_state import even_slice

pytestmark = pytest.mark.unit


# -- checkpoint config knobs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setter", "value", "field"),
    [
        ("set_checkpoint_interval", 5, "interval_ms"),
        ("set_checkpoint_timeout", 0, "timeout_ms"),
        ("set_max_concurrent_checkpoints", 0, "max_concurrent"),
        ("set_tolerable_checkpoint_failure_number", -1, "tolerable_failures"),
        ("set_num_retained_checkpoints", 0, "retained"),
    ],
)
def test_invalid_knob_values_name_the_field(setter: str, value: Any, field: str) -> None:
    config = StreamExecutionEnvironment.get_execution_environment().get_checkpoint_config()
    with pytest.raises(ConfigError, match=rf"checkpoint config {field}={value!r} is invalid"):
        getattr(config, setter)(value)
    assert config.settings() == CheckpointSettings(), "a refused value must not be kept"


@pytest.mark.parametrize("value", [-1, "1s", True, None])
def test_durations_must_be_non_negative_milliseconds_or_timedeltas(value: Any) -> None:
    config = StreamExecutionEnvironment.get_execution_environment().get_checkpoint_config()
    with pytest.raises(ConfigError, match="checkpoint timeout must be a non-negative number of milliseconds"):
        config.set_checkpoint_timeout(value)


def test_every_knob_lands_in_the_settings() -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(timedelta(seconds=2), CheckpointingMode.EXACTLY_ONCE)
    config = env.get_checkpoint_config()
    config.set_checkpoint_timeout(timedelta(minutes=1))
    config.set_min_pause_between_checkpoints(500)
    config.set_tolerable_checkpoint_failure_number(3)
    config.set_externalized_checkpoint_cleanup(ExternalizedCheckpointCleanup.DELETE_ON_CANCELLATION)
    config.set_num_retained_checkpoints(2)
    config.enable_unaligned_checkpoints()
    config.set_aligned_checkpoint_timeout(100)
    config.set_checkpoint_storage("s3://bucket/prefix")
    assert config.is_checkpointing_enabled()
    assert config.storage == "s3://bucket/prefix"
    config.set_checkpoint_storage("filesystem://file:///tmp/flink/checkpoints/")  # the seed's Flink spelling
    assert config.storage == "file:///tmp/flink/checkpoints"
    config.set_checkpoint_storage("s3://bucket/prefix")
    assert config.settings() == CheckpointSettings(
        interval_ms=2000,
        timeout_ms=60_000,
        min_pause_ms=500,
        tolerable_failures=3,
        externalized_cleanup=ExternalizedCheckpointCleanup.DELETE_ON_CANCELLATION,
        retained=2,
        unaligned=True,
        aligned_timeout_ms=100,
    )


def test_unaligned_checkpoints_are_off_with_a_warning_in_at_least_once_and_refuse_concurrent_ones() -> None:
    config = StreamExecutionEnvironment.get_execution_environment().get_checkpoint_config()
    config.set_checkpointing_mode(CheckpointingMode.AT_LEAST_ONCE)
    config.enable_unaligned_checkpoints()  # the seeds' combination: accepted, as in Flink
    settings = config.settings()
    assert settings.unaligned and not settings.unaligned_active
    assert settings.warnings() == [UNALIGNED_OFF_IN_AT_LEAST_ONCE]
    config.set_checkpointing_mode(CheckpointingMode.EXACTLY_ONCE)
    assert config.settings().unaligned_active and config.settings().warnings() == []
    with pytest.raises(ConfigError, match=r"max_concurrent = 1"):
        config.set_max_concurrent_checkpoints(2)


def test_force_unaligned_needs_unaligned_as_in_flink() -> None:
    config = StreamExecutionEnvironment.get_execution_environment().get_checkpoint_config()
    config.set_force_unaligned_checkpoints(True)
    assert not config.settings().unaligned_active  # force alone turns nothing on
    assert config.settings().warnings() == [FORCE_WITHOUT_UNALIGNED]
    config.enable_unaligned_checkpoints(True, force=True)
    settings = config.settings()
    assert settings.unaligned_active and settings.force_unaligned and settings.warnings() == []


def test_bad_storage_uri_is_refused() -> None:
    config = StreamExecutionEnvironment.get_execution_environment().get_checkpoint_config()
    with pytest.raises(ConfigError):
        config.set_checkpoint_storage("ftp://nowhere/x")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda env: env.set_parallelism(0), "parallelism must be an integer >= 1, got 0"),
        (lambda env: env.set_max_parallelism(40_000), "max parallelism must be an integer in 1..32768"),
        (lambda env: env.set_state_backend("rocksdb"), "set_state_backend takes"),
        (lambda env: env.from_sequence(1, 5).set_parallelism(0), "set_parallelism takes an integer >= 1"),
        (lambda env: env.from_sequence(1, 5).key_by(object()), "key_by takes a function"),
        (lambda env: env.from_sequence(1, 5).map(3), "map takes a callable"),
        (lambda env: env.from_sequence(1, 5).add_sink(3), "add_sink takes a SinkFunction or a callable"),
        (lambda env: env.from_source(object()), "from_source takes a streamjob Source"),
    ],
)
def test_environment_and_stream_settings_are_validated(
    call: Callable[[StreamExecutionEnvironment], Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        call(StreamExecutionEnvironment.get_execution_environment())


def test_keyed_process_function_needs_a_keyed_stream() -> None:
    from streamjob.worker.api import KeyedProcessFunction

    class Count(KeyedProcessFunction[Any, Any, Any]):
        def process_element(self, value: Any, ctx: Any, out: Any) -> None:
            out.collect(value)

    with pytest.raises(PipelineError, match="call key_by"):
        StreamExecutionEnvironment.get_execution_environment().from_sequence(1, 5).process(Count())


def test_state_backend_and_restart_strategies() -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_state_backend(EmbeddedRocksDBStateBackend(incremental=True))
    assert (env.state_backend.kind, env.state_backend.incremental) == ("rocksdb", True)
    fixed = RestartStrategies.fixed_delay_restart(3, timedelta(seconds=2))
    assert [fixed.delay_for(n) for n in (1, 3, 4)] == [2000, 2000, None]
    backoff = RestartStrategies.exponential_delay_restart(100, 1000, 3.0)
    assert [backoff.delay_for(n) for n in (1, 2, 3, 4)] == [100, 300, 900, 1000]
    assert RestartStrategies.no_restart().delay_for(1) is None


def test_job_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"invalid job config job\.json: .*name: String should match pattern"):
        parse_job_config({"name": "Bad Name", "entrypoint": "x:y"}, source="job.json")
    with pytest.raises(ConfigError, match=r"checkpoint\.interval_ms: Input should be greater than or equal to 10"):
        parse_job_config({"name": "ok", "entrypoint": "x:y", "checkpoint": {"interval_ms": 1}}, source="job.json")
    with pytest.raises(ConfigError, match=r"parallelism 8 exceeds max_parallelism 4"):
        parse_job_config({"name": "ok", "entrypoint": "x:y", "parallelism": 8, "max_parallelism": 4}, source="job.json")
    with pytest.raises(ConfigError, match=r"entrypoint: Field required"):
        parse_job_config({"name": "ok"}, source="job.json")


def test_overrides_replace_only_what_they_set_and_are_revalidated() -> None:
    base = CheckpointSettings(interval_ms=1000, retained=3)
    merged = CheckpointOverrides(interval_ms=200).apply(base)
    assert (merged.interval_ms, merged.retained) == (200, 3)
    with pytest.raises(ConfigError) as caught:
        CheckpointOverrides(unaligned=True, max_concurrent=2).apply(base)
    # plain values, no enum repr, and the model-wide check's message without pydantic's "(root): Value error"
    assert str(caught.value) == (
        "the job's checkpoint settings with the overrides max_concurrent=2, unaligned=true "
        "are invalid: unaligned checkpoints need max_concurrent = 1, as in Flink"
    )


@pytest.mark.parametrize(
    ("text", "ms"), [("500ms", 500), ("1s", 1000), ("1.5s", 1500), ("2m", 120_000), ("1h", 3_600_000), ("250", 250)]
)
def test_cli_durations(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


def test_cli_duration_error_shows_the_accepted_forms() -> None:
    with pytest.raises(ConfigError, match=r"'soon' is not a duration; use e\.g\. 500ms, 1s"):
        parse_duration_ms("soon")


# -- sources resume exactly from their split positions -----------------------------------------------------


def drain(reader: SourceReader, limit: int | None = None, batch: int = 7) -> list[Any]:
    out: list[Any] = []
    while limit is None or len(out) < limit:
        got = reader.poll(batch if limit is None else min(batch, limit - len(out)))
        if got is None:
            break
        out.extend(got)
    return out


def readers(source: Source, parallelism: int, restored: list[list[Any]] | None = None) -> list[SourceReader]:
    return [
        source.create_reader(SourceReaderContext(i, parallelism, 0), None if restored is None else restored[i])
        for i in range(parallelism)
    ]


def redistribute(states: list[list[Any]], parallelism: int) -> list[list[Any]]:
    """Even-split redistribution of split states, as the operator state store does it on restore."""
    flat = [split for state in states for split in state]
    return [flat[slice(*even_slice(len(flat), i, parallelism))] for i in range(parallelism)]


SOURCES: list[tuple[str, Callable[[], Source], list[Any]]] = [
    ("sequence", lambda: NumberSequenceSource(10, 109), list(range(10, 110))),
    ("generator", lambda: DataGeneratorSource(lambda i: ("k", i * 3), count=100), [("k", i * 3) for i in range(100)]),
]


@pytest.mark.parametrize(("make", "everything"), [(m, e) for _, m, e in SOURCES], ids=[n for n, _, _ in SOURCES])
@pytest.mark.parametrize(("before", "after"), [(2, 2), (1, 3), (3, 1), (2, 3)])
def test_parallel_sources_resume_after_their_snapshot_with_nothing_lost_or_repeated(
    make: Callable[[], Source], everything: list[Any], before: int, after: int
) -> None:
    first = readers(make(), before)
    emitted = [drain(r, limit=11 + 5 * i) for i, r in enumerate(first)]
    states = [r.snapshot() for r in first]
    lost_after_snapshot = [drain(r, limit=3) for r in first]  # emitted after the barrier: replayed on restore
    assert all(lost_after_snapshot)
    second = readers(make(), after, redistribute(states, after))
    resumed = [drain(r) for r in second]
    combined = [x for part in emitted + resumed for x in part]
    assert sorted(combined, key=repr) == sorted(everything, key=repr)
    assert len(combined) == len(set(map(repr, combined)))


def test_collection_source_resumes_at_its_offset() -> None:
    source = CollectionSource(["a", "b", "c", "d", "e"])
    (reader,) = readers(source, 1)
    assert drain(reader, limit=2) == ["a", "b"]
    state = reader.snapshot()
    assert state == [2]
    (resumed,) = readers(source, 1, [state])
    assert drain(resumed) == ["c", "d", "e"]
    assert resumed.poll(10) is None


def test_an_exhausted_reader_snapshots_no_splits_and_stays_finished() -> None:
    (reader,) = readers(NumberSequenceSource(1, 3), 1)
    assert drain(reader) == [1, 2, 3]
    assert reader.snapshot() == []
    (resumed,) = readers(NumberSequenceSource(1, 3), 1, [[]])
    assert resumed.poll(10) is None


def test_rate_limited_generator_never_exceeds_its_budget() -> None:
    (reader,) = readers(DataGeneratorSource(lambda i: i, count=10_000, records_per_second=1.0), 1)
    assert reader.poll(1000) in ([], [0])
    assert reader.next_poll_delay_s() > 0


def test_a_rate_limited_generator_emits_a_poll_delays_worth_at_once_not_a_few_records_per_poll() -> None:
    rate = 20_000.0
    (reader,) = readers(DataGeneratorSource(lambda i: i, count=100_000, records_per_second=rate), 1)
    started = time.monotonic()
    sizes: list[int] = []
    polls = 0
    while time.monotonic() - started < 0.15:
        polls += 1
        batch = reader.poll(4096)
        assert batch is not None
        if batch:
            sizes.append(len(batch))
        else:
            time.sleep(reader.next_poll_delay_s())
    elapsed = time.monotonic() - started
    assert sum(sizes) <= rate * elapsed + 1  # never ahead of its budget
    assert sizes and min(sizes[1:] or sizes) >= rate * 0.005 * 0.9, sizes  # ~100 records, not 1-2 per busy poll
    assert polls < 200, polls


def test_knob_errors_are_one_line_without_pydantic_noise() -> None:
    config = StreamExecutionEnvironment.get_execution_environment().get_checkpoint_config()
    with pytest.raises(ConfigError) as err:
        config.set_checkpoint_interval(5)
    message = str(err.value)
    assert "\n" not in message, message
    assert "pydantic" not in message and "input_value" not in message, message
    assert "interval_ms" in message and "10" in message, message
