"""Rescaling in place (``POST /rescale``): the checks, the rescaled plan, and the request's progress.

A rescale keeps the JobMaster and the registered slots: the running attempt stops with a savepoint
(as an upgrade's stop-with-savepoint: the sources stop at its barrier and two-phase-commit sinks commit
it once), the slots finish their tasks but stay (``Finish.stay``), and the next attempt deploys at the
new parallelism from that savepoint to the slots registered (surplus slots are let go, new ones are
awaited). ``jobmaster.JobMaster`` drives it (``request_rescale`` and its run loop), ``rest.py`` serves
it, ``attempt.Attempt`` ends with ``OutcomeKind.RESCALED``. The checks and the plan are pure.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field, replace

from streamjob.worker.errors import ConfigError, PipelineError
from streamjob.worker.graph.job_graph import build_job_graph
from streamjob.worker.jobmaster.launcher import Launcher
from streamjob.worker.jobmaster.plan import JobPlan
from streamjob.worker.protocol.rest import RescaleStatus, RescaleView
from streamjob.worker.storage.snapshots import LoadedSnapshot


class InvalidRescale(ConfigError):
    """A ``POST /rescale`` whose parallelism the job cannot take (a 400, not a 409)."""


def rescaled_plan(plan: JobPlan, parallelism: int) -> JobPlan:
    """``plan`` at ``parallelism``: the config's parallelism and workers, and the graph built anew.

    The slots build their graph from the ``Deploy``'s config, so the new config is what makes their
    fingerprint match. ``InvalidRescale`` names the field when the parallelism does not fit the job.
    """
    max_parallelism = plan.graph.max_parallelism
    if parallelism < 1 or parallelism > max_parallelism:
        raise InvalidRescale(
            f"parallelism must be between 1 and the job's max parallelism {max_parallelism}, not {parallelism}"
        )
    config = plan.config
    env = plan.loaded.env
    try:
        graph = build_job_graph(
            env.transformations,
            default_parallelism=env.parallelism,
            max_parallelism=config.max_parallelism or env.max_parallelism,
            parallelism_override=parallelism,
        )
    except PipelineError as err:
        raise InvalidRescale(f"parallelism {parallelism} does not fit the job: {err}") from err
    # The slots come from the slot sharing groups (graph.slots), at least the parallelism.
    workers = max(config.workers, math.ceil(graph.slots / config.slots_per_worker))
    config = config.model_copy(update={"parallelism": parallelism, "workers": workers})
    return replace(plan, config=config, graph=graph)


@dataclass
class Rescale:
    """One ``POST /rescale`` from the request to the new attempt running (or its failure)."""

    source: int
    target: int
    requested_at: float = field(default_factory=time.time)
    requested_mono: float = field(default_factory=time.monotonic)
    status: RescaleStatus = RescaleStatus.IN_PROGRESS
    savepoint: str | None = None
    reason: str | None = None
    gap_ms: int | None = None
    savepoint_request: str | None = None
    """The id of its stop-with-savepoint in the ``SavepointTracker``."""

    @property
    def in_progress(self) -> bool:
        """Neither completed nor failed."""
        return self.status is RescaleStatus.IN_PROGRESS

    def running(self) -> None:
        """The new attempt's tasks run: the rescale is done."""
        if self.in_progress:
            self.status = RescaleStatus.COMPLETED
            self.gap_ms = int((time.monotonic() - self.requested_mono) * 1000)

    def fail(self, reason: str) -> None:
        """Ends it as FAILED, unless it already ended."""
        if self.in_progress:
            self.status, self.reason = RescaleStatus.FAILED, reason

    def view(self) -> RescaleView:
        """The body of ``POST /rescale`` and ``GET /job``'s ``rescale``."""
        return RescaleView(
            status=self.status,
            source=self.source,
            target=self.target,
            savepoint=self.savepoint,
            reason=self.reason,
            requested_at=self.requested_at,
            gap_ms=self.gap_ms,
        )


def above_floor(latest: LoadedSnapshot | None, floor: LoadedSnapshot | None) -> LoadedSnapshot | None:
    """What a restart in place restores: the latest checkpoint, unless the last rescale's savepoint is newer.

    The rescale's stop-with-savepoint committed the two-phase-commit sinks: restoring an older
    checkpoint would write that output again.
    """
    if floor is None or (latest is not None and latest.metadata.checkpoint_id > floor.metadata.checkpoint_id):
        return latest
    return floor


async def resize_launcher(launcher: Launcher, slots: int, jobmaster: str, attempt: int) -> None:
    """Waits (briefly) for the let-go local slot processes to exit, then has the launcher run ``slots`` of them."""
    deadline = time.monotonic() + 5.0
    while len(launcher.pids()) > slots + launcher.standby and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    launcher.resize(slots, jobmaster, attempt)
