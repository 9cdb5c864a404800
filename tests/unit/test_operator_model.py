from __future__ import annotations

import pytest
from pydantic import ValidationError

from streamjob.operator.model import StreamJobSpec, StreamJobStatus, UpgradeMode
from streamjob.operator.model.spec import RestartPolicySpec

pytestmark = pytest.mark.unit

MINIMAL = {
    "image": "app:1",
    "entrypoint": "examples.balance:build",
    "storage": {"checkpointsUri": "s3://b/p"},
}


def test_minimal_spec_gets_safe_defaults() -> None:
    spec = StreamJobSpec.parse(MINIMAL)
    assert spec.upgrade_mode is UpgradeMode.SAVEPOINT
    assert spec.parallelism == 1 and spec.max_parallelism == 128
    assert spec.worker_count == 1
    assert spec.savepoints_root == "s3://b/p"
    assert spec.wire()["storage"] == {"checkpointsUri": "s3://b/p", "s3": {}}


def test_worker_count_rounds_up_slots() -> None:
    spec = StreamJobSpec.parse({**MINIMAL, "parallelism": 5, "taskSlots": 2})
    assert spec.worker_count == 3
    assert StreamJobSpec.parse({**MINIMAL, "parallelism": 5, "workers": 7}).worker_count == 7


@pytest.mark.parametrize(
    "patch",
    [
        {"parallelism": 0},
        {"upgradeMode": "savepoints"},
        {"entrypoint": "no colon"},
        {"storage": {"checkpointsUri": "hdfs://x"}},
    ],
)
def test_bad_fields_are_rejected(patch: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        StreamJobSpec.parse({**MINIMAL, **patch})


def test_restart_delays() -> None:
    expo = RestartPolicySpec.model_validate({"backoff": {"initialDelaySeconds": 1, "maxDelaySeconds": 5}})
    assert [expo.delay_for(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    fixed = RestartPolicySpec.model_validate({"strategy": "fixed", "backoff": {"initialDelaySeconds": 3}})
    assert fixed.delay_for(9) == 3


def test_status_round_trips_and_ignores_foreign_keys() -> None:
    status = StreamJobStatus.parse({"lifecycleState": "Running", "jobId": "j", "kopf": {"x": 1}})
    assert status.job_id == "j"
    assert StreamJobStatus.parse(status.wire()) == status
    assert StreamJobStatus.parse(None).lifecycle_state.value == "Created"
