"""Unit tests of the node agent's pure pod-spec reading (``tests/cluster/podspec.py``)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.cluster import podspec

pytestmark = pytest.mark.unit

POD: dict[str, Any] = {
    "metadata": {"name": "jm", "namespace": "ns1", "uid": "u-1", "labels": {"app": "x"}},
    "spec": {"nodeName": "testbed-node", "serviceAccountName": "sa"},
}
OBJECTS = {
    ("configmaps", "ns1", "cfg"): {"mode": b"fast", "a.json": b"{}"},
    ("secrets", "ns1", "sec"): {"password": b"pw"},
}


def lookup(kind: str, namespace: str, name: str) -> dict[str, bytes] | None:
    return OBJECTS.get((kind, namespace, name))


def test_expand_follows_kubernetes_rules() -> None:
    env = {"A": "1", "B": "two"}
    assert podspec.expand("$(A)-$(B)-$(C)-$$(A)", env) == "1-two-$(C)-$(A)"


def test_container_env_resolves_every_source() -> None:
    container = {
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        "env": [
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}}},
            {"name": "URL", "value": "http://$(IP):8081"},
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
        ],
    }
    env = podspec.container_env(POD, container, "127.1.0.9", lookup)
    assert env == {
        "CFG_mode": "fast",
        "CFG_a.json": "{}",
        "NAME": "jm",
        "IP": "127.1.0.9",
        "APP": "x",
        "PW": "pw",
        "MODE": "fast",
        "URL": "http://127.1.0.9:8081",
        "CPU": "2",
    }


def test_missing_references_are_config_errors() -> None:
    container = {"env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]}
    with pytest.raises(podspec.ConfigError, match="absent"):
        podspec.container_env(POD, container, "127.1.0.9", lookup)
    container = {"env": [{"name": "M", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nokey"}}}]}
    with pytest.raises(podspec.ConfigError, match="nokey"):
        podspec.container_env(POD, container, "127.1.0.9", lookup)


def test_volume_files_of_projected_volume() -> None:
    volume = {
        "name": "kube-api-access",
        "projected": {
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {"configMap": {"name": "cfg", "items": [{"key": "mode", "path": "mode.txt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
            ]
        },
    }
    files = podspec.volume_files(POD, volume, "127.1.0.9", lookup, lambda pod, aud, exp: f"tok-{exp}")
    assert files is not None
    assert {item.path: item.content for item in files} == {
        "token": b"tok-3607",
        "mode.txt": b"fast",
        "namespace": b"ns1",
    }
    assert podspec.volume_files(POD, {"name": "e", "emptyDir": {}}, "", lookup, lambda *_: "") is None


def test_decode_secret_data() -> None:
    obj = {"data": {"k": base64.b64encode(b"\x00\x01").decode()}}
    assert podspec.decode_object("secrets", obj) == {"k": b"\x00\x01"}


def test_terminated_state_reasons() -> None:
    assert podspec.terminated_state(0, "a", "b", "c")["terminated"]["reason"] == "Completed"
    failed = podspec.terminated_state(137, "a", "b", "c", signal=9)["terminated"]
    assert failed["reason"] == "Error" and failed["signal"] == 9


def test_a_volume_over_the_shared_host_directory_is_recognised() -> None:
    from pathlib import Path

    from tests.cluster.podproc import hides_shared

    shared = (Path("/tmp"),)
    assert hides_shared("/tmp", shared) and hides_shared("/tmp/", shared) and hides_shared("/", shared)
    assert not hides_shared("/tmp/scratch", shared) and not hides_shared("/etc/streamjob", shared)
    assert not hides_shared("/tmpx", shared)
