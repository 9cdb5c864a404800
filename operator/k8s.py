"""The only module that talks to the Kubernetes API (through the official ``kubernetes`` client).

``Kube`` reads StreamJobs and pods (Secrets only when allowed to), creates and deletes the objects
the builders return, replaces status with optimistic concurrency (resourceVersion) and posts Events. Blocking client
calls run in a thread; ``ApiException`` becomes ``KubernetesError`` (``NotFoundError`` /
``ConflictError``). ``KubeApi`` is the protocol the controller depends on; tests pass a fake.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from streamjob.operator.errors import ConflictError, KubernetesError, NotFoundError
from streamjob.operator.model.snapshot import SNAPSHOT_PLURAL
from streamjob.operator.model.spec import GROUP, PLURAL, VERSION

_T = TypeVar("_T")
COMPONENT = "streamjob-operator"


class KubeApi(Protocol):
    """What the controller needs from Kubernetes."""

    async def get_streamjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The StreamJob object, or None when it is gone."""
        ...

    async def replace_status(self, body: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        """Writes ``status`` if the object is still at ``body``'s resourceVersion (else ConflictError)."""
        ...

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Pods matching a label selector."""
        ...

    async def create(self, obj: dict[str, Any]) -> None:
        """Creates a Pod, ConfigMap, Service, Secret or NetworkPolicy; an existing one is left as it is."""
        ...

    async def delete_pods(self, namespace: str, names: list[str], grace_seconds: int) -> None:
        """Deletes pods by name (already gone is fine)."""
        ...

    async def delete_configmaps(self, namespace: str, selector: str, keep: set[str]) -> None:
        """Deletes the job's ConfigMaps except ``keep``."""
        ...

    async def patch_pod_metadata(self, namespace: str, name: str, metadata: dict[str, Any]) -> None:
        """Merge-patches a pod's labels and annotations (``None`` removes one); a pod already gone is fine."""
        ...

    async def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        """A Secret's decoded data (only with ``rbac.readJobSecrets``: the operator reads none by default)."""
        ...

    async def post_event(self, body: dict[str, Any], *, reason: str, message: str, warning: bool) -> None:
        """Posts an Event about the object ``body``."""
        ...

    async def ping(self) -> None:
        """Raises ``KubernetesError`` unless the API server answers (the readiness probe)."""
        ...

    async def list_snapshots(self, namespace: str) -> list[dict[str, Any]] | None:
        """The StreamJobSnapshots of a namespace; None when their CRD is not installed."""
        ...

    async def patch_snapshot(
        self, namespace: str, name: str, status: dict[str, Any], labels: dict[str, str] | None
    ) -> None:
        """Merge-patches a StreamJobSnapshot's status (and labels); one already gone is fine."""
        ...

    async def delete_snapshot(self, namespace: str, name: str) -> None:
        """Deletes a StreamJobSnapshot (already gone is fine)."""
        ...


def load_client_config(kubeconfig: str | None = None) -> k8s_client.ApiClient:
    """An ApiClient for in-cluster service-account credentials, else the kubeconfig."""
    configuration = k8s_client.Configuration()
    try:
        if kubeconfig is None:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            raise k8s_config.ConfigException("kubeconfig given")
    except k8s_config.ConfigException:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration
        )
    return k8s_client.ApiClient(configuration)


@dataclass(frozen=True)
class KubeCredentials:
    """How to reach and authenticate to the API server, for kopf's login (``handlers.login``)."""

    server: str
    ca_path: str | None
    insecure: bool
    username: str | None
    password: str | None
    scheme: str | None
    token: str | None
    certificate_path: str | None
    private_key_path: str | None


def kube_credentials(kubeconfig: str | None) -> KubeCredentials:
    """The credentials of ``load_client_config`` (so ``--kubeconfig`` holds for kopf's own connection too)."""
    configuration = load_client_config(kubeconfig).configuration
    header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization"
    )
    parts = header.split(" ", 1) if header else []
    scheme, token = (None, None) if not parts else ((None, parts[0]) if len(parts) == 1 else (parts[0], parts[1]))
    return KubeCredentials(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


def _wrap(err: ApiException, what: str) -> KubernetesError:
    status = err.status
    detail = err.reason or ""
    try:
        detail = json.loads(err.body or "{}").get("message", detail)
    except (ValueError, AttributeError):
        pass
    message = f"{what}: HTTP {status} {detail}".strip()
    if status == 404:
        return NotFoundError(message, status=status)
    if status == 409:
        return ConflictError(message, status=status)
    return KubernetesError(message, status=status)


class Kube:
    """``KubeApi`` over the official client."""

    def __init__(self, api: k8s_client.ApiClient) -> None:
        """Wraps an ApiClient (built by ``load_client_config``)."""
        # Bodies are plain dicts (what the builders return), which the typed stubs do not admit.
        self._core: Any = k8s_client.CoreV1Api(api)
        self._custom: Any = k8s_client.CustomObjectsApi(api)
        self._networking: Any = k8s_client.NetworkingV1Api(api)
        self._versions: Any = k8s_client.CoreApi(api)

    async def _call(self, what: str, fn: Callable[[], _T]) -> _T:
        try:
            return await asyncio.to_thread(fn)
        except ApiException as err:
            raise _wrap(err, what) from err
        except OSError as err:  # urllib3 connection errors derive from OSError
            raise KubernetesError(f"{what}: {err}") from err

    @staticmethod
    def _json(response: Any) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(response.data)
        return data

    async def get_streamjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        """See ``KubeApi``."""
        try:
            response = await self._call(
                f"get streamjob {namespace}/{name}",
                lambda: self._custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name, _preload_content=False
                ),
            )
        except NotFoundError:
            return None
        return self._json(response)

    async def ping(self) -> None:
        """See ``KubeApi``: the API server's version list (open to every authenticated client)."""
        await self._call("reach the API server", lambda: self._versions.get_api_versions(_request_timeout=5))

    async def list_streamjobs(self, namespace: str | None, plural: str = PLURAL) -> list[dict[str, Any]]:
        """StreamJobs (or ``plural``) of one namespace, or of every namespace (``None``): for ``release``."""
        if namespace is None:
            call = lambda: self._custom.list_cluster_custom_object(GROUP, VERSION, plural, _preload_content=False)  # noqa: E731
        else:
            call = lambda: self._custom.list_namespaced_custom_object(  # noqa: E731
                GROUP, VERSION, namespace, plural, _preload_content=False
            )
        items: list[dict[str, Any]] = self._json(await self._call(f"list {plural}", call)).get("items", [])
        return items

    async def patch_streamjob(self, namespace: str, name: str, patch: dict[str, Any], plural: str = PLURAL) -> None:
        """Merge-patches a StreamJob (or a ``plural`` object: spec or metadata); one already gone is fine."""
        try:
            await self._call(
                f"patch {plural} {namespace}/{name}",
                lambda: self._custom.patch_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural, name, patch, _preload_content=False
                ),
            )
        except NotFoundError:
            return

    async def replace_status(self, body: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        """See ``KubeApi``."""
        meta = body["metadata"]
        new_body = {
            "apiVersion": body["apiVersion"],
            "kind": body["kind"],
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "resourceVersion": meta["resourceVersion"],
            },
            "spec": body.get("spec", {}),
            "status": status,
        }
        response = await self._call(
            f"update status of {meta['namespace']}/{meta['name']}",
            lambda: self._custom.replace_namespaced_custom_object_status(
                GROUP, VERSION, meta["namespace"], PLURAL, meta["name"], new_body, _preload_content=False
            ),
        )
        return self._json(response)

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """See ``KubeApi``."""
        response = await self._call(
            f"list pods {selector}",
            lambda: self._core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False),
        )
        items: list[dict[str, Any]] = self._json(response).get("items", [])
        return items

    async def create(self, obj: dict[str, Any]) -> None:
        """See ``KubeApi``."""
        kind = obj["kind"]
        namespace = obj["metadata"]["namespace"]
        creators: dict[str, Callable[[], Any]] = {
            "Pod": lambda: self._core.create_namespaced_pod(namespace, obj, _preload_content=False),
            "ConfigMap": lambda: self._core.create_namespaced_config_map(namespace, obj, _preload_content=False),
            "Service": lambda: self._core.create_namespaced_service(namespace, obj, _preload_content=False),
            "Secret": lambda: self._core.create_namespaced_secret(namespace, obj, _preload_content=False),
            "NetworkPolicy": lambda: self._networking.create_namespaced_network_policy(
                namespace, obj, _preload_content=False
            ),
            "StreamJobSnapshot": lambda: self._custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, SNAPSHOT_PLURAL, obj, _preload_content=False
            ),
        }
        try:
            await self._call(f"create {kind} {namespace}/{obj['metadata']['name']}", creators[kind])
        except ConflictError:
            return

    async def delete_pods(self, namespace: str, names: list[str], grace_seconds: int) -> None:
        """See ``KubeApi``."""
        for name in names:
            try:
                await self._call(
                    f"delete pod {namespace}/{name}",
                    functools.partial(
                        self._core.delete_namespaced_pod,
                        name,
                        namespace,
                        grace_period_seconds=grace_seconds,
                        _preload_content=False,
                    ),
                )
            except NotFoundError:
                continue

    async def delete_configmaps(self, namespace: str, selector: str, keep: set[str]) -> None:
        """See ``KubeApi``."""
        response = await self._call(
            f"list configmaps {selector}",
            lambda: self._core.list_namespaced_config_map(namespace, label_selector=selector, _preload_content=False),
        )
        for item in self._json(response).get("items", []):
            name = item["metadata"]["name"]
            if name in keep:
                continue
            try:
                await self._call(
                    f"delete configmap {namespace}/{name}",
                    functools.partial(self._core.delete_namespaced_config_map, name, namespace, _preload_content=False),
                )
            except NotFoundError:
                continue

    async def patch_pod_metadata(self, namespace: str, name: str, metadata: dict[str, Any]) -> None:
        """See ``KubeApi``."""
        try:
            await self._call(
                f"patch pod {namespace}/{name}",
                lambda: self._core.patch_namespaced_pod(
                    name, namespace, {"metadata": metadata}, _preload_content=False
                ),
            )
        except NotFoundError:
            return

    async def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        """See ``KubeApi``."""
        response = await self._call(
            f"read secret {namespace}/{name}",
            lambda: self._core.read_namespaced_secret(name, namespace, _preload_content=False),
        )
        data = self._json(response).get("data") or {}
        return {key: base64.b64decode(value).decode() for key, value in data.items()}

    async def list_snapshots(self, namespace: str) -> list[dict[str, Any]] | None:
        """See ``KubeApi``."""
        try:
            response = await self._call(
                f"list streamjobsnapshots in {namespace}",
                lambda: self._custom.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, SNAPSHOT_PLURAL, _preload_content=False
                ),
            )
        except NotFoundError:
            return None
        items: list[dict[str, Any]] = self._json(response).get("items", [])
        return items

    async def patch_snapshot(
        self, namespace: str, name: str, status: dict[str, Any], labels: dict[str, str] | None
    ) -> None:
        """See ``KubeApi``."""
        try:
            if labels:
                await self._call(
                    f"label streamjobsnapshot {namespace}/{name}",
                    lambda: self._custom.patch_namespaced_custom_object(
                        GROUP, VERSION, namespace, SNAPSHOT_PLURAL, name, {"metadata": {"labels": labels}},
                        _preload_content=False,
                    ),
                )  # fmt: skip
            await self._call(
                f"update status of streamjobsnapshot {namespace}/{name}",
                lambda: self._custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, namespace, SNAPSHOT_PLURAL, name, {"status": status}, _preload_content=False
                ),
            )
        except NotFoundError:
            return

    async def delete_snapshot(self, namespace: str, name: str) -> None:
        """See ``KubeApi``."""
        try:
            await self._call(
                f"delete streamjobsnapshot {namespace}/{name}",
                lambda: self._custom.delete_namespaced_custom_object(
                    GROUP, VERSION, namespace, SNAPSHOT_PLURAL, name, _preload_content=False
                ),
            )
        except NotFoundError:
            return

    async def post_event(self, body: dict[str, Any], *, reason: str, message: str, warning: bool) -> None:
        """See ``KubeApi``."""
        event = event_body(body, reason=reason, message=message, warning=warning)
        namespace = event["metadata"]["namespace"]
        await self._call(
            f"post event {reason}",
            lambda: self._core.create_namespaced_event(namespace, event, _preload_content=False),
        )


def event_body(body: dict[str, Any], *, reason: str, message: str, warning: bool) -> dict[str, Any]:
    """A core/v1 Event about ``body`` (pure; exposed for tests)."""
    from datetime import UTC, datetime

    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    meta = body["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "reason": reason,
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
