"""Posts the planner's event records as Kubernetes Events on the StreamJob (best effort).

Called by ``controller`` after each round's actions; a failure to post is logged, never raised:
events inform users, they are not the operator's memory (status is).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from streamjob.operator.errors import KubernetesError
from streamjob.operator.k8s import KubeApi
from streamjob.operator.reconciler.facts import EventRecord

log = logging.getLogger(__name__)


async def publish(kube: KubeApi, body: dict[str, Any], records: Iterable[EventRecord]) -> None:
    """Posts each record and logs it."""
    meta = body.get("metadata", {})
    for record in records:
        level = logging.WARNING if record.warning else logging.INFO
        log.log(level, "%s/%s %s: %s", meta.get("namespace"), meta.get("name"), record.reason, record.message)
        try:
            await kube.post_event(body, reason=record.reason, message=record.message, warning=record.warning)
        except KubernetesError as err:
            log.warning("could not post event %s: %s", record.reason, err)
