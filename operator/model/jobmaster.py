"""What the operator learns from a JobMaster's REST API this round (pure data).

Returned by the JobMaster adapter (``jobmaster_client``), carried in the observer's ``Facts`` and
read by the planner; it lives with the models because both the adapters and the planner read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from streamjob.worker.protocol.rest import FailureDetail, JobState, RescaleView


@dataclass(frozen=True)
class JobMasterView:
    """What the JobMaster's REST API said this round (``reachable`` False when it did not answer)."""

    reachable: bool
    state: JobState | None = None
    error: str | None = None
    failure: str | None = None
    """Why its last attempt failed (``GET /job``'s ``failure``)."""
    detail: FailureDetail | None = None
    """The same failure's root cause: exception, operator, traceback (``failure_detail``)."""
    parallelism: int | None = None
    """The running attempt's parallelism (its slots)."""
    registered_slots: int | None = None
    """Slots registered with it, spare ones included (a rescale up waits for them)."""
    spare_slots: int | None = None
    """Its idle spare slots (``GET /job``'s ``spare_slots``): the standby workers' and a rescale's early ones."""
    rescale: RescaleView | None = None
    """Its last ``POST /rescale`` (``GET /job``'s ``rescale``)."""
    restarts: int | None = None
    """Attempts it restarted itself after a failure (``GET /job``'s ``restarts``; per JobMaster process)."""


@dataclass(frozen=True)
class SavepointPoll:
    """The answer to ``GET /savepoints/<id>`` (UNKNOWN when the JobMaster does not know the id)."""

    status: Literal["IN_PROGRESS", "COMPLETED", "FAILED", "UNKNOWN"]
    location: str | None = None
    reason: str | None = None
