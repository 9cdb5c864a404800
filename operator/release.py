"""``python -m streamjob.operator.release``: lets StreamJobs go before ``helm uninstall`` (a pre-delete hook).

Without the operator nothing removes the ``streamjob.dev/finalizer`` of a StreamJob, so ``kubectl delete
sj`` would hang after ``helm uninstall``. The hook runs while the operator still runs and, per
``uninstall.jobs`` in the chart's values:

- ``suspend`` (default): sets ``spec.state: suspended`` on every StreamJob and waits (``--timeout``)
  until each is Suspended — a savepoint (or the latest checkpoint, per ``upgradeMode``) is taken and
  the pods are deleted — then releases it: the ``streamjob.dev/released`` annotation (the operator
  leaves such a StreamJob alone) and no finalizer. To resume after reinstalling the operator, remove
  the annotation and set ``state: running``: it restores that savepoint.
- ``release``: releases every StreamJob at once; the jobs' pods keep running unmanaged (no
  restarts, no upgrades) until the StreamJob is deleted, which then deletes them (owner references).
- ``keep``: does nothing (the hook is not installed); ``kubectl delete sj`` then needs the operator
  back, or ``kubectl patch sj NAME --type=merge -p '{"metadata":{"finalizers":null}}'``.

StreamJobSnapshots are released too (annotation and finalizer removed; their files stay).

A job that does not reach Suspended in time is released anyway and named in the output: the hook
never blocks ``helm uninstall`` for longer than ``--timeout``. Exit code 0 unless the API is unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from typing import Any

from streamjob.operator.errors import KubernetesError, NotFoundError
from streamjob.operator.k8s import Kube, load_client_config
from streamjob.operator.model.snapshot import SNAPSHOT_PLURAL
from streamjob.operator.resources.labels import RELEASED

FINALIZER = "streamjob.dev/finalizer"

#: Lifecycle states in which nothing runs any more: the job can be let go at once.
AT_REST = frozenset({"Suspended", "Failed", "Finished", "Created"})


def released(body: dict[str, Any], when: str) -> dict[str, Any]:
    """The metadata patch that releases a StreamJob: the annotation, and its finalizer removed (pure).

    The annotation keeps a running operator from adding the finalizer back (``handlers`` filters on it).
    """
    finalizers = list(body.get("metadata", {}).get("finalizers") or [])
    meta: dict[str, Any] = {"annotations": {RELEASED: when}}
    if FINALIZER in finalizers:
        meta["finalizers"] = [f for f in finalizers if f != FINALIZER]
    return {"metadata": meta}


def key(body: dict[str, Any]) -> tuple[str, str]:
    """``(namespace, name)`` of a StreamJob."""
    return str(body["metadata"]["namespace"]), str(body["metadata"]["name"])


def at_rest(body: dict[str, Any]) -> bool:
    """Whether the StreamJob runs no pod any more (pure)."""
    status = body.get("status") or {}
    return status.get("lifecycleState") in AT_REST and not status.get("operation")


async def release(
    kube: Kube, namespaces: Sequence[str], *, suspend: bool, timeout_s: float, poll_s: float = 1.0
) -> list[str]:
    """Suspends (optionally) and releases every StreamJob; returns one line per job for the hook's log.

    The jobs told to suspend are read again every ``poll_s`` until all are at rest or ``timeout_s`` is up.
    """
    scopes: list[str | None] = list(namespaces) or [None]
    jobs = [job for scope in scopes for job in await kube.list_streamjobs(scope)]
    lines: list[str] = []
    if suspend:
        for body in jobs:
            if not at_rest(body):
                await kube.patch_streamjob(*key(body), {"spec": {"state": "suspended"}})
        deadline = time.monotonic() + timeout_s
        pending = {key(b) for b in jobs if not at_rest(b)}
        while pending and time.monotonic() < deadline:
            await asyncio.sleep(poll_s)
            for namespace, name in sorted(pending):
                now = await kube.get_streamjob(namespace, name)
                if now is None or at_rest(now):
                    pending.discard((namespace, name))
        lines += [
            f"{ns}/{name}: not suspended within {timeout_s:g}s; released while running" for ns, name in sorted(pending)
        ]
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for body in jobs:
        current = await kube.get_streamjob(*key(body))
        if current is not None:
            await kube.patch_streamjob(*key(body), released(current, when))
        state = ((current or {}).get("status") or {}).get("lifecycleState", "gone")
        lines.append(f"{key(body)[0]}/{key(body)[1]}: released ({state})")
    return lines + await release_snapshots(kube, scopes, when)


async def release_snapshots(kube: Kube, scopes: Sequence[str | None], when: str) -> list[str]:
    """Releases every StreamJobSnapshot: its finalizer goes (its files stay), so deleting it never hangs."""
    lines: list[str] = []
    for scope in scopes:
        try:
            snapshots = await kube.list_streamjobs(scope, SNAPSHOT_PLURAL)
        except NotFoundError:  # the StreamJobSnapshot CRD is not installed
            return lines
        for body in snapshots:
            await kube.patch_streamjob(*key(body), released(body, when), SNAPSHOT_PLURAL)
            lines.append(f"{key(body)[0]}/{key(body)[1]}: snapshot released (files kept)")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """The hook's entry point."""
    parser = argparse.ArgumentParser(prog="python -m streamjob.operator.release", description="Releases StreamJobs.")
    parser.add_argument("--namespace", "-n", action="append", default=[], help="namespace (default: all)")
    parser.add_argument("--suspend", action="store_true", help="suspend every job (savepoint) before releasing it")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the suspensions")
    parser.add_argument("--kubeconfig", default=None)
    args = parser.parse_args(argv)
    try:
        kube = Kube(load_client_config(args.kubeconfig))
        lines = asyncio.run(release(kube, args.namespace, suspend=args.suspend, timeout_s=args.timeout))
    except KubernetesError as err:
        print(f"streamjob release: {err}", file=sys.stderr)
        return 1
    print("\n".join(lines) or "no StreamJobs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
