"""The security pieces of the operator: job secrets, the Secret, NetworkPolicies, pod defaults,
the security policy's refusals, its settings, and where the secret may (not) appear."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from typing import Any

import pytest

from streamjob.operator.main import main, with_environment
from streamjob.operator.model import StreamJobSpec
from streamjob.operator.resources import Attempt, JobRef, build_jobmaster_pod, build_worker_pods
from streamjob.operator.resources.networkpolicy import build_network_policies
from streamjob.operator.resources.secret import build_secret, derive_job_secret, job_rest_token
from streamjob.operator.settings import OperatorConfig, SecurityPolicy, SettingsError, security_from_env
from streamjob.operator.testing import reconcile_rounds as rounds
from streamjob.operator.validation import validate
from streamjob.worker.protocol.auth import derive_rest_token
from tests.unit.test_operator_controller import OPERATOR_KEY, make

pytestmark = pytest.mark.unit

JOB = JobRef("wordcount", "team-a", "0f1e2d3c-aaaa-bbbb-cccc-000000000001")
KEY = "x" * 40
BASE: dict[str, Any] = {
    "image": "app:1",
    "entrypoint": "examples.balance:build",
    "parallelism": 2,
    "storage": {"checkpointsUri": "s3://b/c"},
}


def spec(**extra: Any) -> StreamJobSpec:
    return StreamJobSpec.parse({**BASE, **extra})


def attempt(**extra: Any) -> Attempt:
    return Attempt(JOB, spec(**extra), attempt=1, job_id="a" * 32)


# -- the job secret and its Secret ---------------------------------------------------------------


def test_job_secret_is_deterministic_and_distinct_per_key_and_streamjob_identity() -> None:
    secret = derive_job_secret(KEY, JOB)
    assert secret == derive_job_secret(KEY, JOB) and len(secret) == 64
    int(secret, 16)
    others = {
        derive_job_secret("y" * 40, JOB),
        derive_job_secret(KEY, dataclasses.replace(JOB, uid="other-uid")),
        derive_job_secret(KEY, dataclasses.replace(JOB, name="wordcount2")),
        derive_job_secret(KEY, dataclasses.replace(JOB, namespace="team-b")),
    }
    assert secret not in others and len(others) == 4
    assert job_rest_token(KEY, JOB) == derive_rest_token(secret) != secret


def test_job_secret_needs_an_operator_key() -> None:
    with pytest.raises(ValueError, match="STREAMJOB_OPERATOR_KEY"):
        derive_job_secret("", JOB)


def test_secret_holds_the_job_secret_and_rest_token_and_is_owned_by_the_streamjob() -> None:
    secret = derive_job_secret(KEY, JOB)
    obj = build_secret(JOB, secret)
    assert obj["kind"] == "Secret" and obj["metadata"]["name"] == "wordcount-secret-0f1e2d3c"
    data = {k: base64.b64decode(v).decode() for k, v in obj["data"].items()}
    assert data == {"job-secret": secret, "rest-token": derive_rest_token(secret)}
    owner = obj["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("StreamJob", JOB.uid, True)


def test_pods_get_the_secret_by_reference_from_the_uid_named_secret() -> None:
    pods = [build_jobmaster_pod(attempt()), *build_worker_pods(attempt(), "10.0.0.1")]
    assert len(pods) == 3
    for pod in pods:
        env = pod["spec"]["containers"][0]["env"]
        entry = next(e for e in env if e["name"] == "STREAMJOB_JOB_SECRET")
        assert entry == {
            "name": "STREAMJOB_JOB_SECRET",
            "valueFrom": {"secretKeyRef": {"name": "wordcount-secret-0f1e2d3c", "key": "job-secret"}},
        }


# -- NetworkPolicies -----------------------------------------------------------------------------


def test_network_policies_admit_the_job_itself_and_the_operator_namespace_on_rest_only() -> None:
    extra = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    internal, rest = build_network_policies(JOB, operator_namespace="streamjob-system", rest_from=[extra])
    job_labels = {"app.kubernetes.io/name": "streamjob", "streamjob.dev/job": "wordcount"}
    assert internal["spec"] == {
        "podSelector": {"matchLabels": job_labels},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": job_labels}}]}],
    }
    assert rest["spec"]["podSelector"]["matchLabels"] == {**job_labels, "app.kubernetes.io/component": "jobmaster"}
    [rule] = rest["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8081}]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "streamjob-system"}}},
        extra,
    ]
    for policy in (internal, rest):
        assert policy["metadata"]["ownerReferences"][0]["uid"] == JOB.uid
        assert policy["metadata"]["namespace"] == "team-a"


def test_rest_policy_without_peers_admits_nobody_rather_than_everybody() -> None:
    _, rest = build_network_policies(JOB, operator_namespace=None)
    # A rule without `from` would admit every source: with no peer there must be no rule at all.
    assert rest["spec"]["ingress"] == []


# -- pod defaults and overrides ------------------------------------------------------------------


def test_pods_are_hardened_by_default() -> None:
    for pod in (build_jobmaster_pod(attempt()), build_worker_pods(attempt(), "10.0.0.1")[0]):
        spec_ = pod["spec"]
        assert spec_["automountServiceAccountToken"] is False
        assert spec_["enableServiceLinks"] is False  # no env var naming every Service of the namespace
        assert spec_["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        container = spec_["containers"][0]
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        assert {"name": "scratch", "mountPath": "/tmp"} in container["volumeMounts"]
        assert {"name": "scratch", "emptyDir": {}} in spec_["volumes"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["TMPDIR"] == "/tmp"
        assert not {"hostNetwork", "hostPID", "hostIPC"} & set(spec_)


def test_dockerfile_user_is_the_default_run_as_user() -> None:
    from pathlib import Path

    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    assert "USER 10001:10001" in dockerfile


def test_spec_overrides_are_merged_over_the_defaults() -> None:
    at = attempt(
        taskManager={
            "securityContext": {"runAsUser": 2000, "fsGroup": 3000},
            "containerSecurityContext": {"readOnlyRootFilesystem": False},
            "automountServiceAccountToken": True,
            "env": [{"name": "TMPDIR", "value": "/scratch"}],
        }
    )
    worker = build_worker_pods(at, "10.0.0.1")[0]["spec"]
    assert worker["securityContext"]["runAsUser"] == 2000 and worker["securityContext"]["runAsNonRoot"] is True
    assert worker["securityContext"]["fsGroup"] == 3000
    container = worker["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert worker["automountServiceAccountToken"] is True
    tmpdirs = [e["value"] for e in container["env"] if e["name"] == "TMPDIR"]
    assert tmpdirs[-1] == "/scratch"  # the last entry wins
    jobmaster = build_jobmaster_pod(at)["spec"]  # overrides of one role leave the other alone
    assert jobmaster["securityContext"]["runAsUser"] == 10001 and jobmaster["automountServiceAccountToken"] is False


def test_adding_a_capability_keeps_dropping_all_the_others() -> None:
    at = attempt(jobManager={"containerSecurityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}}})
    container = build_jobmaster_pod(at)["spec"]["containers"][0]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    assert validate(at.spec, name="demo", namespace="ns") == []


# -- validation: the security policy -------------------------------------------------------------


def problems(policy: SecurityPolicy | None = None, **extra: Any) -> list[str]:
    return validate(spec(**extra), name="demo", namespace="ns", policy=policy)


def test_the_default_spec_passes_the_default_policy() -> None:
    assert problems() == []
    assert problems(serviceAccount="default") == []


@pytest.mark.parametrize(
    ("extra", "message", "permit"),
    [
        (
            {"taskManager": {"volumes": [{"name": "v", "emptyDir": {}}, {"name": "h", "hostPath": {"path": "/"}}]}},
            "spec.taskManager.volumes[1].hostPath is not allowed; set operator value security.allowHostPath=true "
            "to permit it",
            SecurityPolicy(allow_host_path=True),
        ),
        (
            {"jobManager": {"containerSecurityContext": {"privileged": True}}},
            "spec.jobManager.containerSecurityContext.privileged is not allowed; set operator value "
            "security.allowPrivileged=true to permit it",
            SecurityPolicy(allow_privileged=True),
        ),
        (
            {"taskManager": {"containerSecurityContext": {"allowPrivilegeEscalation": True}}},
            "spec.taskManager.containerSecurityContext.allowPrivilegeEscalation must be false; set operator value "
            "security.allowPrivileged=true to permit it",
            SecurityPolicy(allow_privileged=True),
        ),
        (
            {"taskManager": {"hostNetwork": True}},
            "spec.taskManager.hostNetwork is not allowed; set operator value security.allowHostNamespaces=true "
            "to permit it",
            SecurityPolicy(allow_host_namespaces=True),
        ),
        (
            {"jobManager": {"hostPID": True}},
            "spec.jobManager.hostPID is not allowed; set operator value security.allowHostNamespaces=true to permit it",
            SecurityPolicy(allow_host_namespaces=True),
        ),
        (
            {"taskManager": {"hostIPC": True}},
            "spec.taskManager.hostIPC is not allowed; set operator value security.allowHostNamespaces=true to "
            "permit it",
            SecurityPolicy(allow_host_namespaces=True),
        ),
        (
            {"taskManager": {"containerSecurityContext": {"capabilities": {"add": ["NET_BIND_SERVICE", "SYS_ADMIN"]}}}},
            "spec.taskManager.containerSecurityContext.capabilities.add[1] (SYS_ADMIN) is not allowed; set operator "
            "value security.allowedCapabilities={NET_BIND_SERVICE,SYS_ADMIN} to permit it",
            SecurityPolicy(allowed_capabilities=("NET_BIND_SERVICE", "SYS_ADMIN")),
        ),
        (
            {"taskManager": {"securityContext": {"runAsUser": 0}}},
            "spec.taskManager.securityContext.runAsUser=0 is not allowed; set operator value "
            "security.allowRunAsRoot=true to permit it",
            None,  # runAsNonRoot (a default) must go too: checked below
        ),
        (
            {"serviceAccount": "cluster-admin-sa"},
            "spec.serviceAccount 'cluster-admin-sa' is not allowed; set operator value "
            "security.allowedServiceAccounts={cluster-admin-sa} to permit it",
            SecurityPolicy(allowed_service_accounts=("cluster-admin-sa",)),
        ),
    ],
)
def test_each_refusal_names_the_field_and_the_value_that_permits_it(
    extra: dict[str, Any], message: str, permit: SecurityPolicy | None
) -> None:
    assert message in problems(**extra)
    if permit is not None:
        assert problems(permit, **extra) == []


def test_root_is_permitted_only_by_allow_run_as_root() -> None:
    extra = {"taskManager": {"securityContext": {"runAsUser": 0, "runAsNonRoot": False}}}
    assert len(problems(**extra)) == 2
    assert problems(SecurityPolicy(allow_run_as_root=True), **extra) == []


def test_operator_volumes_and_mount_paths_cannot_be_taken() -> None:
    found = problems(
        taskManager={
            "volumes": [{"name": "scratch", "emptyDir": {}}],
            "volumeMounts": [{"name": "x", "mountPath": "/tmp"}],
            "env": [{"name": "STREAMJOB_JOB_SECRET", "value": "mine"}],
        }
    )
    assert any("volumes[0].name: 'scratch' is used by the operator" in p for p in found)
    assert any("volumeMounts[0].mountPath: /tmp is mounted by the operator" in p for p in found)
    assert any("STREAMJOB_JOB_SECRET is set by the operator" in p for p in found)


# -- settings --------------------------------------------------------------------------------------


def test_security_settings_from_the_environment() -> None:
    env = {
        "STREAMJOB_SECURITY_ALLOW_HOST_PATH": "true",
        "STREAMJOB_SECURITY_ALLOWED_CAPABILITIES": "NET_BIND_SERVICE, NET_RAW",
        "STREAMJOB_SECURITY_ALLOWED_SERVICE_ACCOUNTS": "jobs",
        "STREAMJOB_NETWORK_POLICY": "false",
        "STREAMJOB_NETWORK_POLICY_REST_FROM": json.dumps([{"ipBlock": {"cidr": "10.0.0.0/8"}}]),
        "POD_NAMESPACE": "ops",
    }
    policy = security_from_env(env)
    assert policy.allow_host_path and not policy.allow_privileged and not policy.read_job_secrets
    assert policy.allowed_capabilities == ("NET_BIND_SERVICE", "NET_RAW")
    assert policy.allowed_service_accounts == ("jobs",)
    assert policy.network_policy is False and policy.operator_namespace == "ops"
    assert policy.rest_from == ({"ipBlock": {"cidr": "10.0.0.0/8"}},)
    assert security_from_env({}) == SecurityPolicy()


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"STREAMJOB_OPERATOR_KEY": KEY, "STREAMJOB_SECURITY_ALLOW_HOST_PATH": "maybe"}, "must be true or false"),
        ({"STREAMJOB_OPERATOR_KEY": KEY, "STREAMJOB_NETWORK_POLICY_REST_FROM": "{nope"}, "is not JSON"),
        ({"STREAMJOB_OPERATOR_KEY": KEY, "STREAMJOB_NETWORK_POLICY_REST_FROM": '{"a": 1}'}, "JSON list"),
        ({}, "STREAMJOB_OPERATOR_KEY is not set"),
        ({"STREAMJOB_OPERATOR_KEY": "short"}, "needs at least 32"),
    ],
)
def test_bad_settings_are_one_line_errors(env: dict[str, str], match: str) -> None:
    with pytest.raises(SettingsError, match=match) as err:
        with_environment(OperatorConfig(), env)
    assert "\n" not in str(err.value)


def test_operator_refuses_to_start_without_its_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("STREAMJOB_OPERATOR_KEY", raising=False)
    assert main(["--standalone"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("streamjob-operator: STREAMJOB_OPERATOR_KEY is not set") and err.count("\n") == 1


def test_operator_key_is_not_in_the_config_repr() -> None:
    assert KEY not in repr(OperatorConfig(operator_key=KEY))


# -- the controller: what it creates, and where the secret goes -----------------------------------


def _everything_written(kube: Any) -> list[tuple[str, str]]:
    """(what, JSON) of every object, status and event the operator wrote."""
    out = [(f"{kind}/{name}", json.dumps(obj)) for (kind, name), obj in kube.objects.items()]
    out += [(f"status#{i}", json.dumps(status)) for i, status in enumerate(kube.status_writes)]
    out += [(f"event {reason}", message) for reason, message, _ in kube.events]
    return out


def test_the_secret_appears_in_the_secret_only() -> None:
    deps, kube, _, _ = make()
    asyncio.run(rounds(deps, kube, 6))
    job = JobRef("demo", "ns", "u1")
    secret = derive_job_secret(OPERATOR_KEY, job)
    token = derive_rest_token(secret)
    forms = {secret, token, base64.b64encode(secret.encode()).decode(), base64.b64encode(token.encode()).decode()}
    written = _everything_written(kube)
    assert any(what.startswith("Pod/") for what, _ in written)
    holders = {what for what, text in written if any(form in text for form in forms)}
    assert holders == {"Secret/demo-secret-u1"}
    assert OPERATOR_KEY not in "".join(text for _, text in written)


def test_controller_creates_secret_and_policies_before_the_pods() -> None:
    deps, kube, _, _ = make()
    asyncio.run(rounds(deps, kube, 5))
    creates = [c for c in kube.calls if c.startswith("create:")]
    assert creates[:3] == [
        "create:Secret:demo-secret-u1",
        "create:NetworkPolicy:demo-internal",
        "create:NetworkPolicy:demo-rest",
    ]
    assert creates.index("create:Secret:demo-secret-u1") < creates.index("create:Pod:demo-jobmaster-1")


def test_network_policies_can_be_disabled() -> None:
    deps, kube, _, _ = make()
    deps = dataclasses.replace(
        deps, config=dataclasses.replace(deps.config, security=SecurityPolicy(network_policy=False))
    )
    asyncio.run(rounds(deps, kube, 5))
    assert not [c for c in kube.calls if ":NetworkPolicy:" in c]
    assert "create:Secret:demo-secret-u1" in kube.calls


def test_job_credentials_are_read_only_when_allowed() -> None:
    deps, kube, _, snaps = make()
    deps = dataclasses.replace(
        deps, config=dataclasses.replace(deps.config, security=SecurityPolicy(read_job_secrets=True))
    )
    asyncio.run(rounds(deps, kube, 3))
    assert set(kube.secrets_read) == {"creds"} and snaps.accesses[-1].access_key_id == "id"


def test_a_refused_spec_is_reported_in_status_and_a_warning_event_and_nothing_is_deployed() -> None:
    deps, kube, _, _ = make()
    assert kube.job is not None
    kube.job["spec"]["taskManager"] = {"volumes": [{"name": "h", "hostPath": {"path": "/var/run"}}]}
    asyncio.run(rounds(deps, kube, 3))
    status = kube.job["status"]
    expected = "spec.taskManager.volumes[0].hostPath is not allowed; set operator value security.allowHostPath=true"
    assert expected in status["error"]
    assert any(reason == "InvalidSpec" and expected in message and warning for reason, message, warning in kube.events)
    assert not [c for c in kube.calls if c.startswith("create:")]


@pytest.mark.parametrize(
    ("role_extra", "field"),
    [
        ({"containerSecurityContext": {"procMount": "Unmasked"}}, "containerSecurityContext.procMount=Unmasked"),
        ({"securityContext": {"seccompProfile": {"type": "Unconfined"}}}, "securityContext.seccompProfile"),
        (
            {"containerSecurityContext": {"appArmorProfile": {"type": "Unconfined"}}},
            "containerSecurityContext.appArmorProfile.type=Unconfined",
        ),
        ({"securityContext": {"seLinuxOptions": {"type": "spc_t"}}}, "securityContext.seLinuxOptions.type=spc_t"),
    ],
)
def test_lifting_confinement_needs_allow_privileged(role_extra: dict[str, Any], field: str) -> None:
    found = problems(taskManager=role_extra)
    assert len(found) == 1 and f"spec.taskManager.{field}" in found[0]
    assert found[0].endswith("set operator value security.allowPrivileged=true to permit it")
    assert problems(SecurityPolicy(allow_privileged=True), taskManager=role_extra) == []
    assert problems(taskManager={"securityContext": {"seLinuxOptions": {"type": "container_t"}}}) == []
