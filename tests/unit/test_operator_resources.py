from __future__ import annotations

import dataclasses
import json

import pytest

from streamjob.operator.model import StreamJobSpec
from streamjob.operator.model.spec import RestartPolicySpec
from streamjob.operator.resources import (
    Attempt,
    JobRef,
    build_configmap,
    build_jobmaster_pod,
    build_service,
    build_worker_pod,
    build_worker_pods,
    render_job_config,
)
from streamjob.operator.resources.configmap import restart_strategy
from streamjob.worker.config import JobConfig, RestartStrategy

pytestmark = pytest.mark.unit

JOB = JobRef("wordcount", "team-a", "uid-1")
SPEC = StreamJobSpec.parse(
    {
        "image": "registry/wordcount:7",
        "entrypoint": "examples.wordcount:build",
        "args": ["--words", "10"],
        "parallelism": 3,
        "taskSlots": 2,
        "checkpoint": {"intervalMs": 500, "mode": "EXACTLY_ONCE"},
        "storage": {
            "checkpointsUri": "s3://bucket/chk",
            "s3": {"endpoint": "http://s3:8333", "pathStyle": True, "credentialsSecret": {"name": "s3-creds"}},
        },
        "taskManager": {"env": [{"name": "EXTRA", "value": "1"}], "resources": {"limits": {"memory": "1Gi"}}},
        "serviceAccount": "jobs",
    }
)
AT = Attempt(JOB, SPEC, attempt=4, job_id="a" * 32, restore_from="s3://bucket/chk/team-a/wordcount/x/chk-9")


def test_job_config_is_the_runtime_model_with_restarts_in_place_under_the_restart_policy() -> None:
    cfg = render_job_config(AT)
    assert isinstance(cfg, JobConfig)
    assert cfg.restart_in_place is True  # a worker failure is the JobMaster's to recover
    assert cfg.restart == RestartStrategy(
        kind="exponential-delay",
        attempts=10,
        delay_ms=1000,
        max_delay_ms=60_000,
        multiplier=2.0,
        reset_after_ms=600_000,
    )
    assert (cfg.name, cfg.namespace, cfg.job_id, cfg.attempt) == ("wordcount", "team-a", "a" * 32, 4)
    assert (cfg.workers, cfg.slots_per_worker, cfg.parallelism) == (2, 2, 3)
    assert cfg.checkpoint.interval_ms == 500 and cfg.checkpoint.retained is None
    assert cfg.checkpoints_uri == cfg.savepoints_uri == "s3://bucket/chk"
    assert cfg.restore_from == AT.restore_from
    assert cfg.s3.endpoint_url == "http://s3:8333" and cfg.s3.path_style is True


def test_jobmaster_pod_started_during_a_backoff_holds_the_deployment() -> None:
    container = build_jobmaster_pod(dataclasses.replace(AT, hold_deploy_s=1.25))["spec"]["containers"][0]
    assert container["command"][-2:] == ["--hold-deploy", "1.25"]


def test_configmap_carries_job_json_parsable_by_the_runtime() -> None:
    cm = build_configmap(AT)
    assert cm["metadata"]["name"] == "wordcount-config-4"
    config = JobConfig.model_validate(json.loads(cm["data"]["job.json"]))
    assert (config.rest_port, config.control_port) == (8081, 6123)  # the ports the pods declare and use


def test_jobmaster_pod_is_bare_owned_labelled_and_probed() -> None:
    pod = build_jobmaster_pod(AT)
    meta, spec = pod["metadata"], pod["spec"]
    assert meta["name"] == "wordcount-jobmaster-4"
    assert meta["labels"]["app.kubernetes.io/component"] == "jobmaster"
    assert meta["labels"]["app.kubernetes.io/instance"] == "wordcount"
    assert meta["labels"]["streamjob.dev/job"] == "wordcount"
    assert meta["labels"]["streamjob.dev/attempt"] == "4"
    owner = meta["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("StreamJob", "uid-1", True)
    assert spec["restartPolicy"] == "Never"
    assert spec["serviceAccountName"] == "jobs"
    container = spec["containers"][0]
    assert container["command"] == ["streamjob", "jobmaster", "--config", "/etc/streamjob/job.json"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "rest"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"rest": 8081, "control": 6123}
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "s3-creds",
        "key": "AWS_SECRET_ACCESS_KEY",
    }
    assert env["STREAMJOB_S3_ENDPOINT"]["value"] == "http://s3:8333"
    assert env["STREAMJOB_S3_PATH_STYLE"]["value"] == "true"
    assert spec["volumes"][0]["configMap"]["name"] == "wordcount-config-4"


def test_workers_get_the_jobmaster_ip_and_overrides() -> None:
    pods = build_worker_pods(AT, "10.1.2.3")
    assert [p["metadata"]["name"] for p in pods] == ["wordcount-worker-4-0", "wordcount-worker-4-1"]
    container = pods[0]["spec"]["containers"][0]
    assert container["command"] == ["streamjob", "worker", "--jobmaster", "10.1.2.3:6123", "--slots", "2"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["JOBMASTER_ADDRESS"] == "10.1.2.3:6123" and env["EXTRA"] == "1"
    assert container["resources"] == {"limits": {"memory": "1Gi"}}
    assert pods[0]["spec"]["restartPolicy"] == "Never"
    assert pods[0]["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"


def test_service_selects_the_jobmaster_of_any_attempt() -> None:
    svc = build_service(JOB)
    assert svc["metadata"]["name"] == "wordcount-rest"
    assert svc["spec"]["selector"] == {
        "app.kubernetes.io/name": "streamjob",
        "app.kubernetes.io/instance": "wordcount",
        "app.kubernetes.io/component": "jobmaster",
    }
    assert svc["spec"]["ports"][0]["port"] == 8081


def test_job_containers_fall_back_to_their_log_when_they_leave_no_termination_message() -> None:
    """The JobMaster's reason (and the final-failure marker) comes from its termination message file."""
    for pod in [build_jobmaster_pod(AT), *build_worker_pods(AT, "10.1.2.3")]:
        container = pod["spec"]["containers"][0]
        assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
        assert "terminationMessagePath" not in container  # the default, /dev/termination-log, where it writes


def test_a_fixed_restart_policy_is_a_backoff_that_never_grows_and_still_resets() -> None:
    policy = RestartPolicySpec.model_validate(
        {"strategy": "fixed", "maxRestarts": 3, "resetAfterSeconds": 30, "backoff": {"initialDelaySeconds": 0.25}}
    )
    strategy = restart_strategy(policy)
    assert [strategy.delay_for(n) for n in (1, 2, 3, 4)] == [250, 250, 250, None]
    assert strategy.kind == "exponential-delay" and strategy.reset_after_ms == 30_000


def test_a_replacement_worker_pod_is_a_worker_of_the_same_attempt_under_its_own_name() -> None:
    [first, *_] = build_worker_pods(AT, "10.0.0.7")
    replacement = build_worker_pod(AT, "10.0.0.7", "wordcount-worker-4-0-r1")
    assert replacement["metadata"]["name"] == "wordcount-worker-4-0-r1"
    assert replacement["metadata"]["labels"] == first["metadata"]["labels"]
    assert replacement["spec"] == first["spec"]
