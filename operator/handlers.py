"""The kopf edge: the only module with kopf decorators; maps operator errors to kopf's.

- start-up builds the real adapters into ``memo.deps`` and tunes kopf (annotations for its own
  bookkeeping, our finalizer name, peering lifetime);
- one daemon per StreamJob runs ``controller.reconcile`` in a loop, woken early by changes of the
  StreamJob or of its pods (so a pod failure is acted on within a fraction of a second);
- the deletion handler runs ``controller.finalize`` (bounded; never waits on a dead job);
- a StreamJobSnapshot's change wakes its job's round; its deletion handler disposes of its files
  (``snapshot_disposal``), retried while they are a restore point in use.

A StreamJob annotated ``streamjob.dev/released`` (by the uninstall hook, ``release``) matches neither:
kopf stops its daemon and removes its finalizer, so the operator lets it go for good.

Imported by ``main`` (which runs kopf) and by tests that run the operator in-process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
import kopf
from prometheus_client import start_http_server

from streamjob.operator import controller, snapshot_disposal
from streamjob.operator.checkpoints import StorageSnapshotFinder
from streamjob.operator.deps import Deps
from streamjob.operator.errors import ConflictError, KubernetesError, OperatorError
from streamjob.operator.jobmaster_client import JobMasterClient, operator_rest_tls
from streamjob.operator.k8s import Kube, kube_credentials, load_client_config
from streamjob.operator.metrics import Metrics
from streamjob.operator.model.snapshot import SNAPSHOT_PLURAL
from streamjob.operator.model.spec import GROUP, PLURAL, VERSION
from streamjob.operator.resources.labels import JOB_LABEL, NAME_LABEL, RELEASED
from streamjob.operator.settings import OperatorConfig

log = logging.getLogger(__name__)
PREFIX = "streamjob.dev"


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Configures kopf and builds the adapters."""
    config: OperatorConfig = memo.get("config") or OperatorConfig()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.posting.level = logging.WARNING
    settings.peering.lifetime = 20
    settings.execution.max_workers = 8
    session = aiohttp.ClientSession()
    metrics = Metrics()
    memo["session"] = session
    memo["wakers"] = {}
    memo["deps"] = Deps(
        kube=Kube(load_client_config(config.kubeconfig)),
        jobmaster=JobMasterClient(session, timeout_s=config.jobmaster_timeout_s, tls=operator_rest_tls(config)),
        snapshots=StorageSnapshotFinder(),
        metrics=metrics,
        config=config,
    )
    if config.metrics_port:
        start_http_server(config.metrics_port, addr=config.bind_address, registry=metrics.registry)


@kopf.on.login()
def login(memo: Any, settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    """Credentials from ``--kubeconfig``, else in-cluster, else the default kubeconfig."""
    config: OperatorConfig = memo.get("config") or OperatorConfig()
    try:
        credentials = kube_credentials(config.kubeconfig)
    except Exception as err:  # the client's ConfigException and file errors alike
        raise kopf.LoginError(f"cannot load Kubernetes credentials: {err}") from err
    return kopf.ConnectionInfo(**dataclasses.asdict(credentials), trust_env=settings.networking.trust_env)


@kopf.on.probe(id="kubernetes", errors=kopf.ErrorsMode.PERMANENT, timeout=5.0)
async def kubernetes_reachable(memo: kopf.Memo, **_: Any) -> str:
    """The readiness probe (kopf's ``/healthz``): fails at once (HTTP 500, no retry) until ready.

    Not ready while starting (no adapters yet) or while the API server does not answer.
    """
    deps: Deps | None = memo.get("deps")
    if deps is None:
        raise kopf.PermanentError("starting")
    try:
        await deps.kube.ping()
    except KubernetesError as err:
        raise kopf.PermanentError(str(err)) from err
    return "reachable"


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Closes the HTTP session."""
    session = memo.get("session")
    if session is not None:
        await session.close()


def _waker(memo: Any, namespace: str, name: str) -> asyncio.Event:
    wakers: dict[tuple[str, str], asyncio.Event] = memo["wakers"]
    return wakers.setdefault((namespace, name), asyncio.Event())


@kopf.on.event(GROUP, VERSION, PLURAL)
async def job_changed(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    """A StreamJob changed: run its next round now."""
    _waker(memo, namespace or "", name).set()


@kopf.on.event("v1", "pods", labels={NAME_LABEL: "streamjob", JOB_LABEL: kopf.PRESENT})
async def pod_changed(labels: Mapping[str, str], namespace: str | None, memo: Any, **_: Any) -> None:
    """A pod of a StreamJob changed: run the job's next round now."""
    _waker(memo, namespace or "", labels[JOB_LABEL]).set()


@kopf.on.event(GROUP, VERSION, SNAPSHOT_PLURAL)
async def snapshot_changed(
    body: kopf.Body, spec: Mapping[str, Any], namespace: str | None, memo: Any, **_: Any
) -> None:
    """A StreamJobSnapshot changed: run its job's next round now (it triggers, settles or abandons it).

    A new one naming no StreamJob gets that error in its status instead.
    """
    job = (spec.get("jobReference") or {}).get("name")
    if job:
        _waker(memo, namespace or "", str(job)).set()
    deps: Deps | None = memo.get("deps")
    if deps is not None and body.get("metadata", {}).get("namespace"):
        try:
            await snapshot_disposal.report_orphan(deps, dict(body))
        except OperatorError as err:
            log.info("%s/%s: %s", namespace, body.get("metadata", {}).get("name"), err)


@kopf.on.delete(GROUP, VERSION, SNAPSHOT_PLURAL, id="dispose", annotations={RELEASED: kopf.ABSENT})
async def delete_snapshot(body: kopf.Body, memo: Any, **_: Any) -> None:
    """Deletes the snapshot's files (``disposeOnDelete``) before the resource goes; waits while in use."""
    deps: Deps = memo["deps"]
    try:
        done = await snapshot_disposal.dispose(deps, dict(body))
    except snapshot_disposal.SnapshotInUse as err:
        raise kopf.TemporaryError(str(err), delay=err.retry_after or 10) from err
    except OperatorError as err:
        raise kopf.TemporaryError(str(err), delay=err.retry_after or 5) from err
    log.info("%s/%s: %s", body.metadata.namespace, body.metadata.name, done)


@kopf.daemon(GROUP, VERSION, PLURAL, id="reconcile", cancellation_timeout=5.0, annotations={RELEASED: kopf.ABSENT})
async def run_job(name: str, namespace: str | None, memo: Any, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """Reconciles one StreamJob until it is deleted or the operator stops (or loses peering)."""
    deps: Deps = memo["deps"]
    namespace = namespace or ""
    wake = _waker(memo, namespace, name)
    while not stopped:
        wake.clear()
        try:
            delay = await controller.reconcile(deps, namespace, name)
        except ConflictError:
            delay = deps.config.busy_interval_s
        except OperatorError as err:
            log.warning("%s/%s: %s", namespace, name, err)
            deps.metrics.error((namespace, name))
            delay = err.retry_after or deps.config.error_backoff_s
        except Exception:
            log.exception("%s/%s: reconcile round failed", namespace, name)
            deps.metrics.error((namespace, name))
            delay = deps.config.error_backoff_s
        await _sleep(wake, stopped, delay)


async def _sleep(wake: asyncio.Event, stopped: kopf.DaemonStopped, delay: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + delay
    while not stopped and not wake.is_set():
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        try:
            await asyncio.wait_for(wake.wait(), timeout=min(remaining, 0.5))
        except TimeoutError:
            continue


@kopf.on.delete(GROUP, VERSION, PLURAL, id="finalize", annotations={RELEASED: kopf.ABSENT})
async def delete_job(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    """Stops the job (optional final savepoint, cancel, cleanup) before the StreamJob goes away."""
    deps: Deps = memo["deps"]
    namespace = namespace or ""
    memo["wakers"].pop((namespace, name), None)
    try:
        body = await deps.kube.get_streamjob(namespace, name)
        if body is not None:
            await controller.finalize(deps, body)
    except KubernetesError as err:
        raise kopf.TemporaryError(str(err), delay=3) from err
