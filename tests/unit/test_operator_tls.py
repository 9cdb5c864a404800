"""``spec.tls`` in the operator's builders: the Secret mounted read-only at /etc/streamjob/tls in both pods,
the slots' ``STREAMJOB_INTERNAL_TLS_*``, job.json's ``internal_tls``/``rest_tls``, an HTTPS probe, the
operator's https REST address; and nothing of it without ``spec.tls``."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from streamjob.operator.jobmaster_client import JobMasterClient, operator_rest_tls
from streamjob.operator.main import with_environment
from streamjob.operator.model import StreamJobSpec
from streamjob.operator.observer.gather import rest_address
from streamjob.operator.resources import Attempt, JobRef, build_configmap, build_jobmaster_pod, build_worker_pods
from streamjob.operator.settings import OperatorConfig, SettingsError
from streamjob.worker.config import JobConfig, TlsSettings
from streamjob.worker.errors import ConfigError
from streamjob.worker.protocol.tls import CA_ENV, CERT_ENV, KEY_ENV, rest_server_context
from tests.support.tls_certs import make_pki

pytestmark = pytest.mark.unit

JOB = JobRef("wordcount", "team-a", "uid-1")
BASE = {
    "image": "registry/wordcount:7",
    "entrypoint": "examples.wordcount:build",
    "parallelism": 2,
    "storage": {"checkpointsUri": "s3://bucket/chk"},
}
TLS_DIR = "/etc/streamjob/tls"


def attempt(tls: dict[str, Any] | None) -> Attempt:
    spec = StreamJobSpec.parse({**BASE, **({"tls": tls} if tls is not None else {})})
    return Attempt(JOB, spec, attempt=1, job_id="a" * 32)


def pods(at: Attempt) -> list[dict[str, Any]]:
    return [build_jobmaster_pod(at), *build_worker_pods(at, "10.0.0.5")]


def job_json(at: Attempt) -> JobConfig:
    return JobConfig.model_validate(json.loads(build_configmap(at)["data"]["job.json"]))


def test_without_tls_nothing_changes() -> None:
    at = attempt(None)
    for pod in pods(at):
        text = json.dumps(pod)
        assert "tls" not in text.lower() and "HTTPS" not in text, text
    config = job_json(at)
    assert config.internal_tls is None and config.rest_tls is None
    assert rest_address("10.0.0.5", at.spec) == "10.0.0.5:8081"


def test_the_secret_is_mounted_read_only_in_every_pod_and_the_slots_get_its_files() -> None:
    at = attempt({"secretName": "wordcount-tls"})
    files = TlsSettings.from_dir(TLS_DIR)
    for pod in pods(at):
        spec = pod["spec"]
        container = spec["containers"][0]
        volume = next(v for v in spec["volumes"] if v.get("secret", {}).get("secretName") == "wordcount-tls")
        mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
        assert mount == {"name": volume["name"], "mountPath": TLS_DIR, "readOnly": True}
        assert volume["secret"]["defaultMode"] == 0o440 and spec["securityContext"]["fsGroup"] == 10001
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert (env[CERT_ENV], env[KEY_ENV], env[CA_ENV]) == (files.cert_file, files.key_file, files.ca_file)
    jobmaster = build_jobmaster_pod(at)["spec"]["containers"][0]
    assert jobmaster["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert jobmaster["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    config = job_json(at)
    assert config.internal_tls == files and config.rest_tls == files
    assert rest_address("10.0.0.5", at.spec) == "https://10.0.0.5:8081"


def test_each_plane_can_be_left_plain() -> None:
    rest_only = attempt({"secretName": "s", "internal": False})
    assert job_json(rest_only).internal_tls is None and job_json(rest_only).rest_tls is not None
    assert all(CERT_ENV not in json.dumps(p) for p in pods(rest_only))
    internal_only = attempt({"secretName": "s", "rest": False})
    assert job_json(internal_only).rest_tls is None and job_json(internal_only).internal_tls is not None
    assert "scheme" not in build_jobmaster_pod(internal_only)["spec"]["containers"][0]["readinessProbe"]["httpGet"]
    assert rest_address("10.0.0.5", internal_only.spec) == "10.0.0.5:8081"


def test_spec_tls_needs_a_secret_name() -> None:
    with pytest.raises(ValueError, match="secretName"):
        StreamJobSpec.parse({**BASE, "tls": {"internal": True}})


def test_the_operator_verifies_job_rest_certificates_with_its_ca_file(tmp_path: Any) -> None:
    assert operator_rest_tls(OperatorConfig()) is None
    pki = make_pki(tmp_path / "pki")
    ctx = operator_rest_tls(dataclasses.replace(OperatorConfig(), rest_ca_file=str(pki.ca)))
    assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED and not ctx.check_hostname
    with pytest.raises(ConfigError, match=r"^STREAMJOB_OPERATOR_REST_CA_FILE: cannot read"):
        operator_rest_tls(dataclasses.replace(OperatorConfig(), rest_ca_file=str(tmp_path / "missing")))


def test_the_operator_client_talks_https_to_a_job_with_rest_tls(tmp_path: Any) -> None:
    pki = make_pki(tmp_path / "pki")
    server_ctx = rest_server_context(TlsSettings.from_dir(pki.directory))
    client_ctx = operator_rest_tls(dataclasses.replace(OperatorConfig(), rest_ca_file=str(pki.ca)))

    async def job(_request: web.Request) -> web.Response:
        body = json.loads((Path(__file__).parent / "rest_responses" / "job_running.json").read_text())
        return web.json_response(body)

    async def scenario() -> tuple[Any, Any, Any]:
        app = web.Application()
        app.router.add_get("/job", job)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession() as session:
                verified = await JobMasterClient(session, tls=client_ctx).job(f"https://127.0.0.1:{port}")
                untrusted = await JobMasterClient(session).job(f"https://127.0.0.1:{port}")
                plain = await JobMasterClient(session, tls=client_ctx).job(f"127.0.0.1:{port}")
            return verified, untrusted, plain
        finally:
            await runner.cleanup()

    verified, untrusted, plain = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert verified.reachable and verified.state == "RUNNING", verified
    assert not untrusted.reachable and "certificate" in (untrusted.error or "").lower(), untrusted
    assert not plain.reachable, plain


def test_an_unreadable_operator_ca_file_stops_the_operator_with_one_line(tmp_path: Any) -> None:
    env = {"STREAMJOB_OPERATOR_KEY": "k" * 40, "STREAMJOB_OPERATOR_REST_CA_FILE": str(tmp_path / "missing.crt")}
    with pytest.raises(SettingsError, match=r"^STREAMJOB_OPERATOR_REST_CA_FILE: cannot read .*missing\.crt"):
        with_environment(OperatorConfig(), env)
    pki = make_pki(tmp_path / "pki")
    config = with_environment(OperatorConfig(), {**env, "STREAMJOB_OPERATOR_REST_CA_FILE": str(pki.ca)})
    assert config.rest_ca_file == str(pki.ca)
