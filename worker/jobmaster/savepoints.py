"""Savepoint requests (``POST /savepoints``) from the trigger to how they ended, across attempts.

A request may carry a ``request_key`` (the operator sends one per savepoint it wants): the same key
again finds the request it started (``by_key``), so a caller that lost the answer can ask again
without starting a second savepoint, or a second stop.

The JobMaster owns one ``SavepointTracker`` for its whole life, so ``GET /savepoints/<id>`` answers
after the attempt that took (or failed) the savepoint ended. The tracker hands each request to the
coordinator of the running attempt (``CheckpointCoordinator.request_savepoint``, which queues it
behind checkpoints in progress) and follows it through the coordinator's public callbacks: the
trigger's ``on_triggered``/``on_failed`` and the completed/failed listeners, matched by request id.
Used by ``jobmaster.JobMaster`` (``trigger_savepoint``), ``attempt.Attempt`` (``attach`` to each
coordinator, ``fail_open`` when the attempt ends) and ``rest.py`` (``get``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from streamjob.worker.checkpoint.coordinator import CheckpointCoordinator
from streamjob.worker.checkpoint.decider import SavepointTrigger
from streamjob.worker.errors import ConfigError
from streamjob.worker.protocol.rest import SavepointStatus, SavepointView
from streamjob.worker.storage.layout import METADATA_FILE


class CheckpointRef(Protocol):
    """What the tracker reads of a checkpoint the coordinator reports (pending or completed)."""

    @property
    def id(self) -> int: ...

    @property
    def request_id(self) -> str | None: ...


@dataclass
class SavepointRequest:
    """One ``POST /savepoints`` and how it ended."""

    id: str
    status: SavepointStatus = SavepointStatus.IN_PROGRESS
    location: str | None = None
    reason: str | None = None
    checkpoint_id: int | None = None
    stop: bool = False
    directory: str | None = None
    on_failed: Callable[[str], None] | None = None
    """Told the reason when the request fails (a rescale's savepoint: the rescale fails with it)."""

    def view(self) -> SavepointView:
        """The body of ``GET /savepoints/<id>``."""
        return SavepointView(
            request_id=self.id,
            status=self.status,
            location=self.location,
            reason=self.reason,
            checkpoint_id=self.checkpoint_id,
            stop=self.stop,
        )

    def fail(self, reason: str) -> None:
        """Ends the request as FAILED, unless it already ended."""
        if self.status is SavepointStatus.IN_PROGRESS:
            self.status, self.reason = SavepointStatus.FAILED, reason
            if self.on_failed is not None:
                self.on_failed(reason)


class SavepointTracker:
    """Every savepoint request of the JobMaster's life, by id; at most one in progress at a time."""

    def __init__(self) -> None:
        self._requests: dict[str, SavepointRequest] = {}
        self._keys: dict[str, str] = {}  # request_key -> request id

    def get(self, request_id: str) -> SavepointRequest | None:
        """The request ``request_id``, or None if this JobMaster never had it."""
        return self._requests.get(request_id)

    def by_key(self, key: str | None) -> SavepointRequest | None:
        """The request a ``POST /savepoints`` with ``request_key`` ``key`` started (in progress or ended), if any."""
        return self._requests.get(self._keys[key]) if key is not None and key in self._keys else None

    @property
    def stop_requested(self) -> bool:
        """Whether any request asked to stop the job (local mode then keeps its storage for the savepoint)."""
        return any(r.stop for r in self._requests.values())

    @property
    def in_progress(self) -> SavepointRequest | None:
        """The request in progress, if any."""
        return next((r for r in self._requests.values() if r.status is SavepointStatus.IN_PROGRESS), None)

    def request(
        self,
        coordinator: CheckpointCoordinator,
        directory: str,
        *,
        stop: bool,
        on_failed: Callable[[str], None] | None = None,
        key: str | None = None,
    ) -> SavepointRequest:
        """Starts a savepoint into ``directory`` (a fresh one) through the running attempt's coordinator.

        ``key`` (the caller's ``request_key``) is remembered: ``by_key`` finds the request again.
        """
        if self.in_progress is not None:
            raise ConfigError("a savepoint is already in progress; wait for it (GET /savepoints/<id>)")
        request = SavepointRequest(uuid.uuid4().hex[:12], stop=stop, directory=directory, on_failed=on_failed)
        self._requests[request.id] = request
        if key is not None:
            self._keys[key] = request.id

        def triggered(pending: CheckpointRef) -> None:
            request.checkpoint_id = pending.id

        coordinator.request_savepoint(SavepointTrigger(directory, stop, request.id, triggered, request.fail))
        return request

    def attach(self, coordinator: CheckpointCoordinator) -> None:
        """Follows the savepoints ``coordinator`` completes or aborts (call once per attempt)."""
        coordinator.completed_listeners.append(self._completed)
        coordinator.failed_listeners.append(self._failed)

    def fail_open(self, reason: str) -> None:
        """Fails every request still in progress (its attempt ended)."""
        for request in self._requests.values():
            request.fail(reason)

    def _completed(self, checkpoint: CheckpointRef, location: str) -> None:
        request = self._requests.get(checkpoint.request_id) if checkpoint.request_id else None
        if request is not None:
            suffix = f"/{METADATA_FILE}"
            directory = location[: -len(suffix)] if location.endswith(suffix) else location
            request.status, request.location = SavepointStatus.COMPLETED, directory

    def _failed(self, checkpoint: CheckpointRef, reason: str) -> None:
        request = self._requests.get(checkpoint.request_id) if checkpoint.request_id else None
        if request is not None:
            request.fail(reason)
