"""Pod templates: the merge rules, the built pods, and every refusal naming its field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamjob.operator.model import StreamJobSpec
from streamjob.operator.model import crd as crdgen
from streamjob.operator.model.pod_template_schema import FIELDS_FILE, field_problems, structural_schema
from streamjob.operator.resources import Attempt, JobRef, build_jobmaster_pod, build_worker_pods
from streamjob.operator.resources.pod_template import merge, with_env
from streamjob.operator.settings import SecurityPolicy
from streamjob.operator.testing import PlannerWorld
from streamjob.operator.validation import validate
from tests.support import pod_fields

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
JOB = JobRef("wordcount", "team-a", "0f1e2d3c-aaaa-bbbb-cccc-000000000001")
BASE: dict[str, Any] = {
    "image": "app:1",
    "entrypoint": "examples.balance:build",
    "parallelism": 2,
    "storage": {"checkpointsUri": "s3://b/c"},
}
SIDECAR = {"name": "log-shipper", "image": "shipper:2", "args": ["--from", "/tmp/logs"]}


def spec(**extra: Any) -> StreamJobSpec:
    return StreamJobSpec.parse({**BASE, **extra})


def pods(**extra: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    at = Attempt(JOB, spec(**extra), attempt=1, job_id="a" * 32)
    return build_jobmaster_pod(at), build_worker_pods(at, "10.0.0.1")


def problems(policy: SecurityPolicy | None = None, **extra: Any) -> list[str]:
    return validate(spec(**extra), name="wordcount", namespace="team-a", policy=policy)


def named(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(item for item in items if item["name"] == name)


# -- the field tree and the CRD ------------------------------------------------------------------


def test_field_tree_matches_the_pinned_kubernetes_client() -> None:
    path = ROOT / "operator" / "model" / FIELDS_FILE
    assert path.read_text() == pod_fields.render(), (
        f"{path} drifted from the Kubernetes client; run `python -m tests.support.pod_fields > {path}`"
    )


def test_crd_spells_out_the_pod_template_and_keeps_unknown_fields_for_the_operator_to_refuse() -> None:
    spec_schema = crdgen.spec_schema()
    for node in (
        spec_schema["properties"]["podTemplate"],
        spec_schema["properties"]["jobManager"]["properties"]["podTemplate"],
        spec_schema["properties"]["taskManager"]["properties"]["podTemplate"],
    ):
        assert node["x-kubernetes-preserve-unknown-fields"] is True
        pod = node["properties"]["spec"]
        assert pod["x-kubernetes-preserve-unknown-fields"] is True
        assert pod["properties"]["imagePullSecrets"]["type"] == "array"
        container = pod["properties"]["containers"]["items"]
        assert container["properties"]["envFrom"]["type"] == "array"
        assert container["x-kubernetes-preserve-unknown-fields"] is True
        assert pod["properties"]["topologySpreadConstraints"]["type"] == "array"
    # A client-side `kubectl apply` stores the CRD as compact JSON in an annotation of at most 256 KiB.
    assert len(json.dumps(crdgen.crd(), separators=(",", ":"))) < 200_000


def test_every_object_level_of_the_schema_keeps_unknown_fields() -> None:
    def walk(node: dict[str, Any]) -> None:
        if node.get("type") == "object" and "additionalProperties" not in node:
            assert node.get("x-kubernetes-preserve-unknown-fields") is True, node
        for sub in node.get("properties", {}).values():
            walk(sub)
        if "items" in node:
            walk(node["items"])

    walk(structural_schema("t"))


# -- merge rules ---------------------------------------------------------------------------------


def test_merge_maps_by_key_named_lists_by_name_mounts_by_path_and_replaces_scalar_lists() -> None:
    low = {
        "a": {"x": 1, "y": 2},
        "containers": [{"name": "m", "env": [{"name": "A", "value": "1"}], "args": ["1"]}],
        "volumeMounts": [{"name": "v", "mountPath": "/a"}],
        "tolerations": [{"key": "k1"}],
    }
    high = {
        "a": {"y": 3},
        "containers": [{"name": "m", "env": [{"name": "B", "value": "2"}], "args": ["2"]}, {"name": "s"}],
        "volumeMounts": [{"name": "v", "mountPath": "/b"}],
        "tolerations": [{"key": "k1"}, {"key": "k2"}],
    }
    assert merge(low, high) == {
        "a": {"x": 1, "y": 3},
        "containers": [
            {"name": "m", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}], "args": ["2"]},
            {"name": "s"},
        ],
        "volumeMounts": [{"name": "v", "mountPath": "/a"}, {"name": "v", "mountPath": "/b"}],
        "tolerations": [{"key": "k1"}, {"key": "k2"}],
    }
    assert low["a"] == {"x": 1, "y": 2}, "merge must not change its inputs"
    assert merge({"a": 1}, None) == {"a": 1} and merge(None, {"a": 1}) == {"a": 1}


def test_env_keeps_the_operators_entries_first_and_the_last_value_of_a_name() -> None:
    env = with_env([{"name": "POD_IP"}, {"name": "TMPDIR", "value": "/tmp"}], [{"name": "TMPDIR", "value": "/x"}])
    assert env == [{"name": "POD_IP"}, {"name": "TMPDIR", "value": "/x"}]


# -- the built pods ------------------------------------------------------------------------------


def test_sidecar_init_container_pull_secret_env_from_and_spread_reach_both_roles() -> None:
    template = {
        "metadata": {"labels": {"team": "a"}, "annotations": {"note": "x"}},
        "spec": {
            "imagePullSecrets": [{"name": "regcred"}],
            "initContainers": [{"name": "wait", "image": "busybox", "command": ["true"]}],
            "containers": [SIDECAR, {"name": "worker", "envFrom": [{"configMapRef": {"name": "settings"}}]}],
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}],
            "volumes": [{"name": "logs", "emptyDir": {}}],
        },
    }
    jobmaster, workers = pods(podTemplate=template)
    for pod in (jobmaster, *workers):
        pod_spec = pod["spec"]
        assert pod_spec["imagePullSecrets"] == [{"name": "regcred"}]
        assert pod_spec["topologySpreadConstraints"][0]["topologyKey"] == "zone"
        assert [c["name"] for c in pod_spec["initContainers"]] == ["wait"]
        assert pod["metadata"]["labels"]["team"] == "a" and pod["metadata"]["annotations"] == {"note": "x"}
        assert pod["metadata"]["labels"]["streamjob.dev/job"] == "wordcount"
        names = [c["name"] for c in pod_spec["containers"]]
        assert names[0] in ("jobmaster", "worker") and "log-shipper" in names
        assert {v["name"] for v in pod_spec["volumes"]} >= {"logs", "job-config", "scratch"}
        assert pod_spec["restartPolicy"] == "Never" and pod_spec["automountServiceAccountToken"] is False
        for container in [*pod_spec["containers"], *pod_spec["initContainers"]]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}
            assert context["readOnlyRootFilesystem"] is True
    worker = workers[0]["spec"]["containers"][0]
    assert worker["name"] == "worker" and worker["envFrom"] == [{"configMapRef": {"name": "settings"}}]
    assert worker["command"][:2] == ["streamjob", "worker"]
    assert "envFrom" not in jobmaster["spec"]["containers"][0]


def test_role_template_merges_over_the_common_one_and_the_older_fields_over_both() -> None:
    jobmaster, workers = pods(
        podTemplate={
            "spec": {
                "nodeSelector": {"disk": "ssd", "zone": "a"},
                "containers": [{"name": "worker", "env": [{"name": "LEVEL", "value": "common"}]}],
                "securityContext": {"runAsUser": 2000},
            }
        },
        taskManager={
            "podTemplate": {
                "spec": {
                    "nodeSelector": {"zone": "b"},
                    "terminationGracePeriodSeconds": 30,
                    "containers": [
                        {
                            "name": "worker",
                            "env": [{"name": "LEVEL", "value": "role"}, {"name": "TMPDIR", "value": "/t"}],
                        }
                    ],
                }
            },
            "nodeSelector": {"rack": "r1"},
            "env": [{"name": "EXTRA", "value": "1"}],
            "securityContext": {"fsGroup": 3000},
        },
    )
    pod = workers[0]["spec"]
    assert pod["nodeSelector"] == {"disk": "ssd", "zone": "b", "rack": "r1"}
    assert pod["terminationGracePeriodSeconds"] == 30 and jobmaster["spec"]["terminationGracePeriodSeconds"] == 10
    assert pod["securityContext"]["runAsUser"] == 2000 and pod["securityContext"]["fsGroup"] == 3000
    assert pod["securityContext"]["runAsNonRoot"] is True
    env = pod["containers"][0]["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names))
    values = {e["name"]: e.get("value") for e in env}
    assert values["LEVEL"] == "role" and values["EXTRA"] == "1" and values["TMPDIR"] == "/t"
    assert names.index("POD_IP") < names.index("LEVEL"), "the operator's entries come first for $(POD_IP) references"
    assert names[0] == "STREAMJOB_JOB_SECRET"


def test_main_container_keeps_the_operators_fields_and_resources_merge() -> None:
    _, workers = pods(
        taskManager={
            "podTemplate": {
                "spec": {
                    "containers": [
                        {
                            "name": "worker",
                            "resources": {"requests": {"cpu": "500m"}, "limits": {"memory": "1Gi"}},
                            "securityContext": {"readOnlyRootFilesystem": False},
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                }
            },
            "resources": {"limits": {"memory": "2Gi"}},
        }
    )
    container = workers[0]["spec"]["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "500m"}, "limits": {"memory": "2Gi"}}
    assert container["securityContext"]["readOnlyRootFilesystem"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/data", "/etc/streamjob", "/tmp"}


# -- refusals, each naming its field -------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            {"podTemplate": {"spec": {"containers": [{"name": "worker", "command": ["sh"]}]}}},
            "spec.podTemplate.spec.containers[0].command: set by the operator",
        ),
        (
            {"jobManager": {"podTemplate": {"spec": {"containers": [{"name": "jobmaster", "ports": []}]}}}},
            "spec.jobManager.podTemplate.spec.containers[0].ports: set by the operator",
        ),
        (
            {"jobManager": {"podTemplate": {"spec": {"containers": [{"name": "jobmaster", "livenessProbe": {}}]}}}},
            "spec.jobManager.podTemplate.spec.containers[0].livenessProbe: set by the operator",
        ),
        (
            {"taskManager": {"podTemplate": {"spec": {"containers": [{"name": "worker", "image": "x"}]}}}},
            "spec.taskManager.podTemplate.spec.containers[0].image: set by the operator; use spec.image",
        ),
        (
            {
                "taskManager": {
                    "podTemplate": {
                        "spec": {"containers": [{"name": "worker", "env": [{"name": "STREAMJOB_JOB_SECRET"}]}]}
                    }
                }
            },
            "spec.taskManager.podTemplate.spec.containers[0].env[0]: STREAMJOB_JOB_SECRET is set by the operator",
        ),
        (
            {"podTemplate": {"spec": {"restartPolicy": "Always"}}},
            "spec.podTemplate.spec.restartPolicy: set by the operator",
        ),
        (
            {"podTemplate": {"spec": {"serviceAccountName": "admin"}}},
            "spec.podTemplate.spec.serviceAccountName: set by the operator; use spec.serviceAccount",
        ),
        ({"podTemplate": {"metadata": {"name": "x"}}}, "spec.podTemplate.metadata.name: set by the operator"),
        (
            {"podTemplate": {"metadata": {"labels": {"streamjob.dev/job": "other"}}}},
            "spec.podTemplate.metadata.labels: 'streamjob.dev/job' is reserved",
        ),
        (
            {"podTemplate": {"spec": {"volumes": [{"name": "scratch", "emptyDir": {}}]}}},
            "spec.podTemplate.spec.volumes[0].name: 'scratch' is used by the operator",
        ),
        (
            {
                "podTemplate": {
                    "spec": {"containers": [{"name": "worker", "volumeMounts": [{"name": "v", "mountPath": "/tmp"}]}]}
                }
            },
            "spec.podTemplate.spec.containers[0].volumeMounts[0].mountPath: /tmp is mounted by the operator",
        ),
        (
            {"podTemplate": {"spec": {"initContainers": [{"name": "i", "env": [{"value": "1"}]}]}}},
            "spec.podTemplate.spec.initContainers[0].env[0].name: every entry needs a name",
        ),
        (
            {"podTemplate": {"spec": {"containers": [{"image": "x"}]}}},
            "spec.podTemplate.spec.containers[0].name: every container needs a name",
        ),
        (
            {"podTemplate": {"spec": {"containers": [{"name": "s", "imagePullSecret": "x"}]}}},
            "spec.podTemplate.spec.containers[0].imagePullSecret: unknown field of a Container",
        ),
        (
            {"podTemplate": {"spec": {"imagePullSecret": [{"name": "x"}]}}},
            "spec.podTemplate.spec.imagePullSecret: unknown field of a PodSpec; did you mean imagePullSecrets?",
        ),
        (
            {"podTemplate": {"spce": {}}},
            "spec.podTemplate.spce: unknown field of a PodTemplateSpec; did you mean spec?",
        ),
        (
            {"podTemplate": {"spec": {"containers": [{"name": "s", "securityContext": {"runAsUsr": 5}}]}}},
            "spec.podTemplate.spec.containers[0].securityContext.runAsUsr: unknown field of a SecurityContext",
        ),
        (
            {"podTemplate": {"spec": {"containers": [{"name": "log"}], "initContainers": [{"name": "log"}]}}},
            "spec.podTemplate.spec.initContainers[0].name: 'log' is used twice",
        ),
        (
            {"podTemplate": {"spec": {"volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]}}},
            "spec.podTemplate.spec.volumes[1].name: 'v' is used twice",
        ),
        (
            {"podTemplate": {"spec": {"volumes": [{"emptyDir": {}}]}}},
            "spec.podTemplate.spec.volumes[0].name: every volume needs a name",
        ),
        (
            {"podTemplate": {"spec": {"containers": [None]}}},
            "spec.podTemplate.spec.containers[0]: must be an object, not null",
        ),
        (
            {"podTemplate": {"spec": {"nodeSelector": {"zone": None}}}},
            "spec.podTemplate.spec.nodeSelector.zone: must be string, not null",
        ),
        (
            {"podTemplate": {"spec": {"containers": {"name": "s"}}}},
            "spec.podTemplate.spec.containers: must be a list",
        ),
        (
            {"podTemplate": {"spec": {"terminationGracePeriodSeconds": "ten"}}},
            'spec.podTemplate.spec.terminationGracePeriodSeconds: must be integer, not "ten"',
        ),
    ],
)
def test_conflicting_unknown_and_mistyped_fields_are_refused_by_name(extra: dict[str, Any], expected: str) -> None:
    found = problems(**extra)
    assert any(p.startswith(expected) for p in found), found


def test_main_container_names_belong_to_their_role() -> None:
    found = problems(taskManager={"podTemplate": {"spec": {"containers": [{"name": "jobmaster", "image": "x"}]}}})
    assert found == [
        "spec.taskManager.podTemplate.spec.containers[0].name: 'jobmaster' names the other role's main container; "
        "give the sidecar another name"
    ]
    # In spec.podTemplate each main container goes to its own role's pods only.
    common = {"spec": {"containers": [{"name": "worker", "workingDir": "/w"}, {"name": "jobmaster", "stdin": True}]}}
    assert problems(podTemplate=common) == []
    jobmaster, workers = pods(podTemplate=common)
    assert [c["name"] for c in jobmaster["spec"]["containers"]] == ["jobmaster"]
    assert (
        jobmaster["spec"]["containers"][0]["stdin"] is True and "workingDir" not in jobmaster["spec"]["containers"][0]
    )
    assert [c["name"] for c in workers[0]["spec"]["containers"]] == ["worker"]
    assert workers[0]["spec"]["containers"][0]["workingDir"] == "/w"


# -- the security policy reaches every container of a template ----------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            {"spec": {"containers": [{**SIDECAR, "securityContext": {"privileged": True}}]}},
            "spec.taskManager.podTemplate.spec.containers[0].securityContext.privileged is not allowed; "
            "set operator value security.allowPrivileged=true",
        ),
        (
            {"spec": {"initContainers": [{"name": "i", "securityContext": {"allowPrivilegeEscalation": True}}]}},
            "spec.taskManager.podTemplate.spec.initContainers[0].securityContext.allowPrivilegeEscalation must be "
            "false",
        ),
        (
            {"spec": {"containers": [{"name": "s", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}]}},
            "spec.taskManager.podTemplate.spec.containers[0].securityContext.capabilities.add[0] (SYS_ADMIN)",
        ),
        (
            {"spec": {"securityContext": {"runAsUser": 0}}},
            "spec.taskManager.podTemplate.spec.securityContext.runAsUser=0 is not allowed; set operator value "
            "security.allowRunAsRoot=true",
        ),
        (
            {"spec": {"containers": [{"name": "worker", "securityContext": {"runAsNonRoot": False}}]}},
            "spec.taskManager.podTemplate.spec.containers[0].securityContext.runAsNonRoot=false",
        ),
        (
            {"spec": {"volumes": [{"name": "h", "hostPath": {"path": "/"}}]}},
            "spec.taskManager.podTemplate.spec.volumes[0].hostPath is not allowed; set operator value "
            "security.allowHostPath=true",
        ),
        (
            {"spec": {"hostNetwork": True}},
            "spec.taskManager.podTemplate.spec.hostNetwork is not allowed; set operator value "
            "security.allowHostNamespaces=true",
        ),
        (
            {"spec": {"securityContext": {"seccompProfile": {"type": "Unconfined"}}}},
            "spec.taskManager.podTemplate.spec.securityContext.seccompProfile.type=Unconfined",
        ),
    ],
)
def test_template_settings_beyond_the_security_policy_are_refused(template: dict[str, Any], expected: str) -> None:
    found = problems(taskManager={"podTemplate": template})
    assert any(p.startswith(expected) for p in found), found


def test_the_policy_can_permit_what_it_refuses_by_default() -> None:
    template = {
        "spec": {
            "hostNetwork": True,
            "volumes": [{"name": "h", "hostPath": {"path": "/var/log"}}],
            "containers": [{**SIDECAR, "securityContext": {"privileged": True, "allowPrivilegeEscalation": True}}],
        }
    }
    policy = SecurityPolicy(allow_host_path=True, allow_host_namespaces=True, allow_privileged=True)
    assert problems(policy, podTemplate=template) == []
    assert len(problems(podTemplate=template)) == 4


def test_field_problems_accept_a_full_realistic_template() -> None:
    template = {
        "metadata": {"labels": {"a": "b"}},
        "spec": {
            "affinity": {
                "podAntiAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 1,
                            "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {}},
                        }
                    ]
                }
            },
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [
                {
                    "name": "s",
                    "image": "x",
                    "ports": [{"containerPort": 9090, "name": "metrics"}],
                    "resources": {"limits": {"cpu": 1, "memory": "64Mi"}},
                    "readinessProbe": {"httpGet": {"path": "/", "port": "metrics"}},
                    "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                }
            ],
            "volumes": [{"name": "c", "configMap": {"name": "x", "items": [{"key": "k", "path": "p"}]}}],
        },
    }
    assert field_problems(template, "spec.podTemplate") == []
    assert problems(podTemplate=template) == []


# -- the scale subresource's status --------------------------------------------------------------


def test_scale_status_reports_the_running_parallelism_and_the_worker_selector() -> None:
    def running(w: PlannerWorld) -> bool:
        return w.status.lifecycle_state.value == "Running" and w.status.operation is None

    w = PlannerWorld({**BASE, "parallelism": 1})
    w.step()
    assert (
        w.status.selector
        == "streamjob.dev/job=demo,app.kubernetes.io/name=streamjob,app.kubernetes.io/component=worker"
    )
    w.run_until(lambda w: running(w) and bool(w.checkpoints.get("job01")))
    assert w.status.parallelism == 1
    w.update_spec(parallelism=3)  # what `kubectl scale --replicas=3` writes
    w.run_until(lambda w: running(w) and w.status.parallelism == 3)
    assert len(w.deployed) == 1 and w.jm_parallelism == 3, "rescaled in place: the same attempt and JobMaster"
    workers = [p for p in w.pods.values() if p.view().component == "worker" and p.view().attempt == 1]
    assert len(workers) == 3


# -- any template: a list of problems or pods, never a traceback ----------------------------------

VALUE = (
    st.none() | st.booleans() | st.integers(-2, 2) | st.sampled_from(["worker", "jobmaster", "a", "/tmp", "scratch"])
)


def some(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """An object with any subset of ``fields``, or a stray value where the object should be."""
    return st.fixed_dictionaries({}, optional=fields) | VALUE


def listed(item: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(item, max_size=3) | VALUE


CONTAINER = some(
    name=VALUE,
    image=VALUE,
    command=listed(VALUE),
    env=listed(some(name=VALUE, value=VALUE)),
    envFrom=listed(some(configMapRef=some(name=VALUE))),
    volumeMounts=listed(some(name=VALUE, mountPath=VALUE)),
    securityContext=some(privileged=VALUE, runAsUser=VALUE, capabilities=some(add=listed(VALUE))),
    resources=some(limits=st.dictionaries(st.just("cpu"), VALUE) | VALUE),
)
TEMPLATE = some(
    metadata=some(labels=st.dictionaries(st.sampled_from(["a", "streamjob.dev/x"]), VALUE) | VALUE, name=VALUE),
    spec=some(
        containers=listed(CONTAINER),
        initContainers=listed(CONTAINER),
        volumes=listed(some(name=VALUE, emptyDir=some(), hostPath=some(path=VALUE))),
        securityContext=some(runAsUser=VALUE, runAsNonRoot=VALUE),
        nodeSelector=st.dictionaries(st.just("zone"), VALUE) | VALUE,
        tolerations=listed(some(key=VALUE)),
        hostNetwork=VALUE,
        restartPolicy=VALUE,
    ),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(template=TEMPLATE.filter(lambda t: isinstance(t, dict)))
def test_any_template_gives_problems_or_pods_never_an_exception(template: dict[str, Any]) -> None:
    found = problems(podTemplate=template, taskManager={"podTemplate": template})
    assert all(isinstance(p, str) and p.startswith("spec.") for p in found)
    if not found:
        jobmaster, workers = pods(podTemplate=template, taskManager={"podTemplate": template})
        assert jobmaster["spec"]["restartPolicy"] == "Never" and workers[0]["spec"]["containers"][0]["name"] == "worker"
