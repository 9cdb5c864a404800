"""``id_of_ignored_in_flight_data`` (Flink's ``execution.checkpointing.recover-without-channel-state.checkpoint-id``)
is a checkpoint override like the others: job.json, ``streamjob run -D checkpoint.KEY`` and the CRD's
``spec.checkpoint`` set it, and it reaches the settings the attempt's restore plan reads.

The restore that drops the in-flight data is in ``tests/integration/test_unaligned_in_flight.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from streamjob.operator.model import StreamJobSpec
from streamjob.operator.model.crd import spec_schema
from streamjob.operator.resources import Attempt, JobRef, render_job_config
from streamjob.worker.cli_parser import parse_args
from streamjob.worker.config import CheckpointOverrides, CheckpointSettings, parse_job_config
from streamjob.worker.errors import ConfigError

pytestmark = pytest.mark.unit

CODE = CheckpointSettings(interval_ms=100, unaligned=True)  # what the pipeline code set


def test_the_run_define_reaches_the_settings() -> None:
    args = parse_args(["run", "-D", "checkpoint.id_of_ignored_in_flight_data=7", "job.py"])
    assert list(args.defines) == [("id_of_ignored_in_flight_data", 7)]
    config = parse_job_config(
        {"name": "j", "entrypoint": "job.py", "checkpoint": dict(args.defines)}, source="(from the flags)"
    )
    settings = config.checkpoint.apply(CODE)  # as resolve_plan merges them: the attempt reads these settings
    assert settings.id_of_ignored_in_flight_data == 7
    assert CheckpointOverrides().apply(CODE.model_copy(update={"id_of_ignored_in_flight_data": 3})).model_dump() == (
        CODE.model_copy(update={"id_of_ignored_in_flight_data": 3}).model_dump()
    )  # unset, the code's value stays


@pytest.mark.parametrize("bad", [0, -1, "seven", 1.5, 2**63])
def test_only_a_positive_checkpoint_id_is_accepted(bad: Any) -> None:
    assert CheckpointOverrides(id_of_ignored_in_flight_data=1).id_of_ignored_in_flight_data == 1
    with pytest.raises(ValidationError):
        CheckpointOverrides(id_of_ignored_in_flight_data=bad)
    with pytest.raises(ConfigError, match="id_of_ignored_in_flight_data"):
        parse_job_config(
            {"name": "j", "entrypoint": "job.py", "checkpoint": {"id_of_ignored_in_flight_data": bad}}, source="x"
        )


def test_the_crd_field_reaches_the_job_config_and_the_settings() -> None:
    field = spec_schema()["properties"]["checkpoint"]["properties"]["idOfIgnoredInFlightData"]
    assert (field["type"], field["minimum"]) == ("integer", 1)
    spec = StreamJobSpec.parse(
        {
            "image": "registry/job:1",
            "entrypoint": "examples.wordcount:build",
            "parallelism": 2,
            "checkpoint": {"idOfIgnoredInFlightData": 12},
            "storage": {"checkpointsUri": "s3://bucket/chk"},
        }
    )
    config = render_job_config(Attempt(JobRef("wc", "ns", "uid-1"), spec, attempt=1, job_id="a" * 32))
    assert config.checkpoint.id_of_ignored_in_flight_data == 12
    assert config.checkpoint.apply(CODE).id_of_ignored_in_flight_data == 12
    with pytest.raises(ValidationError):
        StreamJobSpec.parse(
            {
                "image": "registry/job:1",
                "entrypoint": "examples.wordcount:build",
                "checkpoint": {"idOfIgnoredInFlightData": 0},
                "storage": {"checkpointsUri": "s3://bucket/chk"},
            }
        )
