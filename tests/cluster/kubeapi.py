"""A small JSON REST client for the Kubernetes API, used by the test bed's node agent.

The official ``kubernetes`` client turns every object into a pydantic model; the node agent works on
plain dicts (the pod spec as the API server sends it) and needs a raw watch stream, so it talks to
the API server through this thin layer instead. Authentication comes from a kubeconfig, loaded by the
official client's loader (client certificates, bearer tokens, embedded data all work).

Callers: ``tests/cluster/node_agent.py`` and ``tests/cluster/pods.py``.
"""

from __future__ import annotations

import json
import ssl
import urllib.parse
from collections.abc import Iterator
from typing import Any

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

Json = dict[str, Any]


class KubeError(Exception):
    """An API call answered with an error status."""

    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


class KubeApi:
    """GET/POST/PATCH/DELETE and WATCH against one API server, with dict bodies."""

    def __init__(self, kubeconfig: str) -> None:
        configuration = k8s_client.Configuration()
        k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
        self.server = configuration.host.rstrip("/")
        self.headers: dict[str, str] = {"Accept": "application/json"}
        token = configuration.api_key.get("authorization") or configuration.api_key.get("BearerToken")
        if token:
            self.headers["Authorization"] = token if token.startswith("Bearer ") else f"Bearer {token}"
        self.pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=8,
            cert_reqs=ssl.CERT_REQUIRED if configuration.verify_ssl else ssl.CERT_NONE,
            ca_certs=configuration.ssl_ca_cert,
            cert_file=configuration.cert_file,
            key_file=configuration.key_file,
        )

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Json:
        """One call; returns the decoded JSON answer or raises :class:`KubeError`."""
        url = self.server + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        headers = dict(self.headers)
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        response = self.pool.request(
            method, url, body=data, headers=headers, timeout=urllib3.Timeout(connect=5.0, read=timeout), retries=False
        )
        text = response.data.decode("utf-8", "replace")
        if response.status >= 300:
            raise KubeError(response.status, method, path, text)
        return json.loads(text) if text else {}

    def get(self, path: str, **query: str) -> Json:
        return self.request("GET", path, query=query or None)

    def create(self, path: str, body: Json) -> Json:
        return self.request("POST", path, body)

    def merge_patch(self, path: str, body: Json) -> Json:
        return self.request("PATCH", path, body, content_type="application/merge-patch+json")

    def delete(self, path: str, body: Json | None = None) -> Json:
        return self.request("DELETE", path, body)

    def watch(self, path: str, resource_version: str, timeout_seconds: int = 60) -> Iterator[Json]:
        """Yields watch events (``{"type": ..., "object": ...}``) until the server ends the stream."""
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        url = f"{self.server}{path}?{urllib.parse.urlencode(query)}"
        response = self.pool.request(
            "GET",
            url,
            headers=self.headers,
            preload_content=False,
            retries=False,
            timeout=urllib3.Timeout(connect=5.0, read=timeout_seconds + 15),
        )
        try:
            if response.status >= 300:
                raise KubeError(response.status, "WATCH", path, response.read().decode("utf-8", "replace"))
            buffer = b""
            for chunk in response.stream(65536, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        finally:
            response.release_conn()


def pod_path(namespace: str, name: str = "", sub: str = "") -> str:
    """The REST path of a pod (or of the namespace's pod collection), with an optional sub-resource."""
    path = f"/api/v1/namespaces/{namespace}/pods"
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path
