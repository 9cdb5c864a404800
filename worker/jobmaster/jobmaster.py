"""The JobMaster: runs attempts of one job until it finishes, is cancelled, or fails for good.

Started by ``streamjob jobmaster`` (Kubernetes) or in-process by ``streamjob run`` (local) and the
test kit. It resolves where the job starts (the jobId and the first restore point), then runs one
``attempt.Attempt`` after another: each deploys the job to the slots, runs the checkpoints and ends
with an outcome. With ``restart_in_place`` (local mode and Kubernetes) a failed attempt is followed by
the next one under the restart strategy, restoring the latest retained checkpoint, while this
JobMaster stays up (Flink's failover): the surviving slots are released (their tasks stop, they stay
registered), a lost slot is replaced (locally the launcher starts a new process; on Kubernetes the
operator replaces only the failed worker pod) and the next attempt deploys to all of them. A slot
whose tasks do not stop within ``RELEASE_TIMEOUT_S`` makes every slot start afresh. Without
``restart_in_place`` the JobMaster exits and whoever started it restarts. Savepoint requests outlive
attempts (``savepoints.SavepointTracker``). The REST API (``rest.py``) and the control port
(``control.py``) call in here.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from streamjob.worker.checkpoint.coordinator import CheckpointCoordinator
from streamjob.worker.checkpoint.restore import plan_restore
from streamjob.worker.checkpoint.stats import CheckpointStats
from streamjob.worker.config import ExternalizedCheckpointCleanup
from streamjob.worker.errors import ConfigError, StreamJobError
from streamjob.worker.failures import final_at_start
from streamjob.worker.jobmaster.attempt import (
    Attempt,
    AttemptContext,
    AttemptOutcome,
    EventSink,
    OutcomeKind,
    TaskMetrics,
)
from streamjob.worker.jobmaster.launcher import Launcher
from streamjob.worker.jobmaster.plan import JobPlan
from streamjob.worker.jobmaster.rescale import Rescale, above_floor, rescaled_plan, resize_launcher
from streamjob.worker.jobmaster.savepoint_targets import check_savepoint_target, savepoint_roots
from streamjob.worker.jobmaster.savepoints import SavepointRequest, SavepointTracker
from streamjob.worker.jobmaster.slots import SlotConnection, SlotRegistry
from streamjob.worker.protocol.messages import Released, ToJobMaster
from streamjob.worker.protocol.rest import (
    FailureDetail,
    JobOverview,
    JobState,
    RescaleView,
    VertexView,
    WorkerView,
)
from streamjob.worker.storage.checkpoint_storage import CheckpointStorage, JobStorageLocation
from streamjob.worker.storage.s3_settings import s3_settings_for
from streamjob.worker.storage.snapshots import LoadedSnapshot
from streamjob.worker.storage.stores import StoreFactory

log = logging.getLogger(__name__)

RELEASE_TIMEOUT_S = 15.0
"""How long the JobMaster waits for released slots to stop their tasks before it lets every slot go.

A slot gives up on its own after ``slot.RELEASE_WAIT_S`` (and exits); this covers one that cannot say so.
"""


class JobMaster:
    """Owns one job until it finishes, is cancelled, or fails for good."""

    def __init__(
        self,
        plan: JobPlan,
        *,
        launcher: Launcher | None = None,
        events: EventSink | None = None,
        hold_deploy_until: float | None = None,
        attempts: Callable[[AttemptContext], Attempt] = Attempt,
        stores: StoreFactory | None = None,
    ) -> None:
        """``hold_deploy_until`` (``time.monotonic()``): no task of the first attempt is deployed before it.

        ``attempts`` makes each attempt (tests pass an ``Attempt`` with a scripted ``run``). ``stores``
        opens the checkpoint storage's URIs (default: files and S3 with the job's S3 settings); the
        in-process test kit passes its in-memory storage.
        """
        self.plan = plan
        self.stores = stores
        self._attempts = attempts
        self.hold_deploy_until = hold_deploy_until
        self.config = plan.config
        self.graph = plan.graph
        self.launcher = launcher
        self.events: EventSink = events or (lambda kind, data: None)
        self.registry = SlotRegistry()
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="jobmaster-io")
        self.stats = CheckpointStats()
        self.savepoints = SavepointTracker()
        self.attempt = plan.config.attempt
        self.restarts = 0
        self.job_id = plan.job_id
        self.start_time = time.time()
        self.failure: str | None = None
        self._failure_detail: FailureDetail | None = None
        self.storage: CheckpointStorage | None = None
        self.exit_code = 0
        self.final = False
        """The job failed in a way no restart can mend (the operator must not restart it either)."""
        self._state = JobState.CREATED
        self._current: Attempt | None = None
        self._cancel_requested = asyncio.Event()  # set by cancel(); also ends restart waits
        self._slots_kept = False
        """The slots of the last (failed) attempt were released and stay for the next one."""
        self._backoff_restarts = 0
        """Restarts the strategy's delay counts (``restarts`` less the ones an exponential reset forgave)."""
        self._failure_times_ms: list[float] = []  # monotonic, for the failure-rate restart strategy
        self.rescale: Rescale | None = None
        """The last ``POST /rescale`` (``rescale.py``); its savepoint is the restore floor afterwards."""
        self._rescale_plan: JobPlan | None = None
        self._floor: LoadedSnapshot | None = None
        """The last rescale's savepoint: a restart in place never restores a checkpoint older than it."""
        for warning in plan.settings.warnings():
            log.warning("%s", warning)

    jobmaster_address = "127.0.0.1:0"
    """``HOST:PORT`` of the control port, where the slots register (set by whoever starts ``ControlServer``)."""

    # -- what the REST API and the metrics read ---------------------------------------------------------
    @property
    def state(self) -> JobState:
        """The job's state: RUNNING from the attempt's ``start`` until the JobMaster decides what next.

        FAILED as soon as an attempt ends in a failure no restart can mend, or the strategy gives up:
        before the slots are told, so that no one takes their exit for a worker failure to recover.
        """
        current = self._current
        if current is not None and current.failed_final:
            return JobState.FAILED  # from the outcome on: its goodbye ends the workers, which must not be replaced
        starting = self._state in (JobState.DEPLOYING, JobState.RECOVERING)
        return JobState.RUNNING if starting and current is not None and current.started else self._state

    @property
    def coordinator(self) -> CheckpointCoordinator | None:
        """The checkpoint coordinator of the current (or last) attempt, once it runs."""
        return self._current.coordinator if self._current is not None else None

    @property
    def task_metrics(self) -> dict[tuple[str, int], TaskMetrics]:
        """The counters the slots of the current attempt reported, by task."""
        return self._current.task_metrics if self._current is not None else {}

    @property
    def restored_from(self) -> str | None:
        """The snapshot the current attempt restored (None: a fresh start)."""
        return self.stats.restored_from

    @property
    def failure_detail(self) -> FailureDetail | None:
        """The root cause of the last failure: the current attempt's, else the one before (or the start's)."""
        current = self._current.failure_detail if self._current is not None else None
        return current or self._failure_detail

    def records_in_total(self) -> int:
        """Records read by the sources so far in this attempt."""
        return self._current.records_in_total() if self._current is not None else 0

    def job_overview(self) -> JobOverview:
        """The body of ``GET /job``."""
        return JobOverview(
            id=self.job_id,
            name=self.config.name,
            namespace=self.config.namespace,
            state=self.state,
            parallelism=self.graph.parallelism,
            max_parallelism=self.graph.max_parallelism,
            slots=self.graph.slots,
            start_time=self.start_time,
            restored_from=self.restored_from,
            attempt=self.attempt,
            restarts=self.restarts,
            failure=self.failure,
            failure_detail=self.failure_detail,
            vertices=tuple(
                VertexView(id=v.id, name=v.name, parallelism=v.parallelism, slot_group=v.slot_group)
                for v in self.graph.vertices
            ),
            workers=tuple(
                WorkerView(slot=c.index, pid=c.pid, address=c.data_address) for c in self.registry.slots.values()
            ),
            spare_slots=len(self.registry.spares),
            records_in=self.records_in_total(),
            control_address=self.jobmaster_address,
            checkpoints_uri=self.plan.checkpoints_uri,
            savepoints_uri=self.plan.savepoints_uri,
            rescale=self.rescale.view() if self.rescale is not None else None,
        )

    # -- where the job starts -----------------------------------------------------------------------------
    def _open_storage(self) -> CheckpointStorage:
        location = JobStorageLocation.parse(
            self.plan.checkpoints_uri,
            self.plan.savepoints_uri,
            namespace=self.config.namespace,
            name=self.config.name,
            job_id=self.job_id,
        )
        return CheckpointStorage(location, stores=self.stores or StoreFactory(s3_settings_for(self.config.s3)))

    async def _resolve_start(self) -> str | None:
        """Picks the jobId and the first restore point (``latest`` continues the newest lineage)."""
        loop = asyncio.get_running_loop()
        target = self.plan.restore_target
        if target == "latest" and not self.job_id:
            from streamjob.worker.storage.lineages import latest_lineage

            found = await loop.run_in_executor(
                self.executor,
                lambda: latest_lineage(
                    self.plan.checkpoints_uri,
                    self.config.namespace,
                    self.config.name,
                    s3_settings_for(self.config.s3),
                    stores=self.stores,
                ),
            )
            if found is None:
                raise ConfigError(
                    f"--restore latest: no completed checkpoint of job '{self.config.name}' under "
                    f"{self.plan.checkpoints_uri}; start without --restore, or give a snapshot URI"
                )
            self.job_id = found
        if not self.job_id:
            self.job_id = uuid.uuid4().hex[:16]
        self.storage = self._open_storage()
        storage = self.storage
        if target is None:
            restore = None
        elif target == "latest":
            ref = await loop.run_in_executor(self.executor, storage.latest_retained)
            restore = ref.metadata_uri if ref is not None else None
        else:
            restore = await loop.run_in_executor(self.executor, storage.resolve_restore_target, target)
        if self.plan.fresh_lineage or await loop.run_in_executor(self.executor, storage.read_lineage) is None:
            await loop.run_in_executor(self.executor, storage.write_lineage, restore)
        return restore

    def _require_storage(self) -> CheckpointStorage:
        assert self.storage is not None
        return self.storage

    async def _load(self, uri: str) -> LoadedSnapshot:
        storage = self._require_storage()
        loop = asyncio.get_running_loop()
        loaded: LoadedSnapshot = await loop.run_in_executor(self.executor, storage.load_metadata, uri)
        await loop.run_in_executor(self.executor, storage.import_shared, loaded)
        return loaded

    async def _load_latest(self) -> LoadedSnapshot | None:
        """The latest retained checkpoint of the jobId, loaded; None if there is none."""
        storage = self._require_storage()
        latest = await asyncio.get_running_loop().run_in_executor(self.executor, storage.latest_retained)
        return await self._load(latest.metadata_uri) if latest is not None else None

    # -- the restart loop ---------------------------------------------------------------------------------
    async def run(self) -> int:
        """Runs attempts until the job ends; returns the process exit code.

        Problems found before the first attempt (storage unreachable, a corrupted or incompatible
        snapshot, a uid mismatch) raise ``StreamJobError`` before any worker starts, so the CLI
        reports them as one error line with the error's exit code.
        """
        try:
            restore = await self._resolve_start()
            loaded = await self._load(restore) if restore else None
            if loaded is not None:
                plan_restore(loaded.metadata, self.graph, allow_non_restored_state=self.config.allow_non_restored_state)
        except StreamJobError as err:
            self._state, self.failure, self.final = JobState.FAILED, str(err), final_at_start(err)
            self._failure_detail = FailureDetail(exception=type(err).__name__, message=str(err), attempt=self.attempt)
            raise
        while True:
            began = time.monotonic()
            outcome = await self._run_attempt(loaded)
            self._failure_detail = self.failure_detail  # the next attempt's own failure replaces it
            await self._completions_written()
            rescaled = outcome.kind is OutcomeKind.RESCALED
            if (outcome.kind.failed or rescaled) and self._cancel_requested.is_set():
                outcome = AttemptOutcome(OutcomeKind.CANCELLED)  # cancelled while the attempt was failing
            elif rescaled:
                loaded = await self._rescaled()
                continue
            if outcome.kind is OutcomeKind.CANCELLED:
                await self._let_slots_go("cancelled")  # released by the failing attempt: stop them now
                await self._cleanup_after_cancel()
            if not outcome.kind.failed:
                self._state = JobState.CANCELED if outcome.kind is OutcomeKind.CANCELLED else JobState.FINISHED
                self.events(self._state.lower(), {})
                return 0
            self.failure = outcome.reason
            self.restarts += 1
            delay = self._next_delay(time.monotonic() - began) if not outcome.final else None
            if delay is None:
                # FAILED before the goodbye: the operator, seeing the workers end, must not replace them.
                self._state, self.final, self.exit_code = JobState.FAILED, outcome.final, outcome.exit_code
                await self._let_slots_go("failed", stop_processes=True)
                self.events("failed", {"reason": outcome.reason, "restarts": self.restarts - 1})
                return self.exit_code or 5
            self._state = JobState.RESTARTING
            self.events("restarting", {"reason": outcome.reason, "delay_ms": delay, "restart": self.restarts})
            await self._restart_delay(delay / 1000)
            await self._await_released()
            self.attempt += 1
            try:
                loaded = above_floor(await self._load_latest(), self._floor) or loaded
            except StreamJobError as err:
                # Storage briefly unreachable: this restart fails too; the strategy decides whether to retry.
                loaded = await self._retry_restore(err)

    # -- rescaling in place (rescale.py) ------------------------------------------------------------------
    def request_rescale(self, parallelism: int) -> RescaleView:
        """``POST /rescale``: stop with a savepoint, then run the next attempt at ``parallelism`` on these slots.

        ``InvalidRescale`` (a 400) for a parallelism the job cannot take; ``ConfigError`` (a 409) while the
        job is not RUNNING or a savepoint or rescale is in progress. The same parallelism is a no-op.
        """
        plan = rescaled_plan(self.plan, parallelism)
        if self.rescale is not None and self.rescale.in_progress:
            raise ConfigError(
                f"a rescale to {self.rescale.target} is in progress; wait for it (GET /job, field rescale)"
            )
        coordinator = self._running_coordinator("a rescale can only start")
        current = self._current
        assert current is not None
        if parallelism == self.graph.parallelism:
            done = Rescale(source=parallelism, target=parallelism)
            done.running()
            return done.view()
        if self.savepoints.in_progress is not None:
            raise ConfigError("a savepoint is in progress; rescale once it ended (GET /savepoints/<id>)")
        rescale = Rescale(source=self.graph.parallelism, target=parallelism)
        directory = self._require_storage().new_savepoint_dir(None)
        current.rescaling = True
        request = self.savepoints.request(coordinator, directory, stop=True, on_failed=self._rescale_failed)
        rescale.savepoint_request = request.id
        self.rescale, self._rescale_plan = rescale, plan
        if self.launcher is not None and plan.graph.slots > self.graph.slots:
            # Started now, the new slot processes register as spares while the savepoint is taken.
            self.launcher.resize(plan.graph.slots, self.jobmaster_address, self.attempt + 1)
        self.events("rescaling", {"from": rescale.source, "to": rescale.target})
        return rescale.view()

    def _rescale_failed(self, reason: str) -> None:
        """The rescale's savepoint failed: the rescale is FAILED and the attempt runs on at its parallelism."""
        rescale = self.rescale
        if rescale is None or not rescale.in_progress:
            return
        rescale.fail(f"the rescale's stop-with-savepoint failed: {reason}")
        if self._current is not None:
            self._current.rescaling = False
        self.events("rescale_failed", {"from": rescale.source, "to": rescale.target, "reason": rescale.reason})

    def _attempt_event(self, kind: str, data: dict[str, Any]) -> None:
        """An attempt's event; ``running`` completes a rescale in progress (its gap ends here)."""
        rescale = self.rescale
        if kind == "running" and rescale is not None and rescale.in_progress and rescale.savepoint is not None:
            rescale.running()
            self.events("rescaled", {"from": rescale.source, "to": rescale.target, "gap_ms": rescale.gap_ms})
            # Until a checkpoint of the new attempt completes, the newest one in storage predates the savepoint:
            # take one as soon as the coordinator runs (just after this event), to close that window.
            asyncio.get_running_loop().call_soon(self._checkpoint_after_rescale)
        self.events(kind, data)

    async def _rescaled(self) -> LoadedSnapshot:
        """After a rescale's stop-with-savepoint: the rescaled plan, the slots resized, the savepoint loaded.

        The slots finished their tasks and were released (``Attempt._end``); the surplus ones are let go
        (their processes exit; on Kubernetes the operator deletes their pods), and the next attempt
        waits for the missing ones (started by the launcher; on Kubernetes the operator's new pods,
        possibly registered already as spares).
        """
        rescale, plan = self.rescale, self._rescale_plan
        assert rescale is not None and plan is not None
        request = self.savepoints.get(rescale.savepoint_request or "")
        assert request is not None and request.location is not None
        rescale.savepoint = request.location
        slots_before, slots = self.graph.slots, plan.graph.slots  # slot sharing groups: slots ≠ parallelism
        self.plan, self.config, self.graph = plan, plan.config, plan.graph
        await self._await_released()
        await self.registry.shrink(slots)
        if self.launcher is not None and slots < slots_before:
            await resize_launcher(self.launcher, slots, self.jobmaster_address, self.attempt + 1)
        self.attempt += 1
        storage = self._require_storage()
        uri = await asyncio.get_running_loop().run_in_executor(
            self.executor, storage.resolve_restore_target, request.location
        )
        self._floor = await self._load(uri or request.location)
        return self._floor

    def _checkpoint_after_rescale(self) -> None:
        coordinator = self.coordinator
        if coordinator is not None and not coordinator.stopped and self.state is JobState.RUNNING:
            try:
                coordinator.trigger()
            except StreamJobError as err:  # the periodic checkpoints will close the window instead
                log.info("no checkpoint right after the rescale: %s", err)

    def _next_delay(self, ran_s: float) -> int | None:
        """The restart strategy's delay before the next attempt in place; None: give up (or not in place).

        An exponential-delay strategy forgives earlier restarts once an attempt ran ``reset_after_ms``
        (the operator's ``restartPolicy.resetAfterSeconds``), as Flink's backoff threshold does.
        """
        strategy = self.plan.restart
        if not self.config.restart_in_place:
            return None
        if strategy.kind == "exponential-delay" and ran_s * 1000 >= strategy.reset_after_ms:
            self._backoff_restarts = 0
        self._backoff_restarts += 1
        self._failure_times_ms.append(time.monotonic() * 1000)
        return strategy.delay_for(self._backoff_restarts, self._failure_times_ms)

    async def _await_released(self) -> None:
        """Waits for the released slots to stop their tasks; one that does not makes every slot start afresh."""
        self._slots_kept = True
        if not await self.registry.wait_released(RELEASE_TIMEOUT_S):
            stuck = [c.index for c in self.registry.slots.values() if c.fenced is not None]
            log.warning(
                "worker slots %s did not stop their tasks within %.0f s: every slot starts afresh",
                stuck,
                RELEASE_TIMEOUT_S,
            )
            await self._let_slots_go("failed", stop_processes=True)

    async def _let_slots_go(self, outcome: str, *, stop_processes: bool = False) -> None:
        """Says goodbye to the slots a failed attempt released and closes them (the strategy gave up, or a cancel).

        ``stop_processes``: the launcher's slot processes are killed too (a failure; a cancel lets them exit).
        """
        self._slots_kept = False
        if self.registry.slots or self.registry.spares:
            await self.registry.say_goodbye(outcome)
            await self.registry.close_all()
        if stop_processes and self.launcher is not None:
            self.launcher.stop_all()

    async def _run_attempt(self, restore: LoadedSnapshot | None) -> AttemptOutcome:
        """Runs the next attempt (none once the job is being cancelled)."""
        if self._cancel_requested.is_set():
            return AttemptOutcome(OutcomeKind.CANCELLED)  # cancelled between attempts: start nothing
        previous = self.coordinator
        hold, self.hold_deploy_until = self.hold_deploy_until, None  # only the first attempt waits out a backoff
        self._state = JobState.DEPLOYING if self.restarts == 0 else JobState.RECOVERING
        self._current = self._attempts(
            AttemptContext(
                plan=self.plan,
                number=self.attempt,
                job_id=self.job_id,
                storage=self._require_storage(),
                registry=self.registry,
                executor=self.executor,
                stats=self.stats,
                savepoints=self.savepoints,
                events=self._attempt_event,
                launcher=self.launcher,
                jobmaster_address=self.jobmaster_address,
                # ids the last attempt used without leaving a directory (expired early) are not reused
                next_checkpoint_id=previous.next_id if previous is not None else 1,
                hold_deploy_until=hold,
                replace_slots=self._slots_kept,
            )
        )
        return await self._current.run(restore)

    async def _retry_restore(self, first: StreamJobError) -> LoadedSnapshot | None:
        """Finds the restore point again under the restart strategy while storage is unreachable."""
        error: StreamJobError = first
        while True:
            self.restarts += 1
            delay = self._restart_delay_ms()
            if delay is None:
                raise error
            self.events(
                "restarting",
                {"reason": f"cannot find the latest checkpoint: {error}", "delay_ms": delay, "restart": self.restarts},
            )
            await self._restart_delay(delay / 1000)
            if self._cancel_requested.is_set():
                return None  # the next attempt sees the cancellation at once
            try:
                return await self._load_latest()
            except StreamJobError as err:
                error = err

    def _restart_delay_ms(self) -> int | None:
        """The restart strategy's delay before restart number ``self.restarts`` (None: give up), after a failure now."""
        self._failure_times_ms.append(time.monotonic() * 1000)
        return self.plan.restart.delay_for(self.restarts, self._failure_times_ms)

    async def _restart_delay(self, seconds: float) -> None:
        """The restart strategy's delay, cut short by a cancellation."""
        try:
            await asyncio.wait_for(self._cancel_requested.wait(), seconds)
        except TimeoutError:
            pass

    async def _completions_written(self) -> None:
        """Waits for the ended attempt's checkpoints whose ``_metadata`` was being written.

        Every task acknowledged them, so they complete after the attempt ended; the next attempt
        must restore the newest of them (and number its checkpoints after it), not the one before.
        """
        coordinator = self.coordinator
        if coordinator is not None and coordinator.background:
            await asyncio.wait(coordinator.background, timeout=30)

    async def _cleanup_after_cancel(self) -> None:
        """Deletes the lineage's checkpoints once nothing can write to it any more."""
        if self.plan.settings.externalized_cleanup is not ExternalizedCheckpointCleanup.DELETE_ON_CANCELLATION:
            return
        await self._completions_written()
        await asyncio.get_running_loop().run_in_executor(self.executor, self._require_storage().delete_job_root)

    # -- the slots (from control.py) -----------------------------------------------------------------------
    def _attempt_of(self, conn: SlotConnection) -> Attempt | None:
        """The attempt ``conn`` belongs to; None for a connection of an attempt whose slots were let go."""
        current = self._current
        if current is None or self.registry.slots.get(conn.index) is not conn:
            return None
        return current

    def on_slot_message(self, conn: SlotConnection, message: ToJobMaster) -> None:
        """One control message from a registered slot, for its attempt.

        A released slot's messages belong to the failed attempt until it answers ``released``: dropped.
        """
        if conn.fenced is not None:
            if isinstance(message, Released):
                self.registry.released(conn, message.attempt)
            return
        attempt = self._attempt_of(conn)
        if attempt is not None:
            attempt.on_message(conn, message)

    def on_slot_lost(self, conn: SlotConnection) -> None:
        """A slot's connection closed: fatal to its attempt unless the slot finished; its index is free again."""
        attempt = self._attempt_of(conn) if conn.fenced is None else None
        if attempt is not None:
            attempt.on_slot_lost(conn)
        self.registry.remove(conn)

    def fail(self, reason: str, *, final: bool = False) -> None:
        """Ends the current attempt as failed (the restart strategy decides what next, unless ``final``)."""
        if self._current is not None:
            self._current.fail(reason, final=final)

    # -- user requests (from rest.py) ----------------------------------------------------------------------
    def _running_coordinator(self, what: str) -> CheckpointCoordinator:
        coordinator = self.coordinator
        if coordinator is None or self.state is not JobState.RUNNING:
            raise ConfigError(f"the job is {self.state}; {what} while it is RUNNING")
        return coordinator

    def trigger_checkpoint(self) -> int:
        """``POST /checkpoints``."""
        return self._running_coordinator("checkpoints can only be triggered").trigger().id

    def trigger_savepoint(self, target: str | None, stop: bool, key: str | None = None) -> SavepointRequest:
        """``POST /savepoints``: at most one savepoint at a time; a target must lie under an allowed root.

        A ``key`` that started a request before answers that request, whatever became of it (and
        whatever the job's state now): a retry after a lost answer neither starts a second savepoint
        nor fails because the first is in progress. A different key while one runs is refused.
        """
        known = self.savepoints.by_key(key)
        if known is not None:
            return known
        if target is not None:
            roots = savepoint_roots(self.plan.savepoints_uri, self.config.allowed_savepoint_roots)
            target = str(check_savepoint_target(target, roots))
        coordinator = self._running_coordinator("savepoints can only be taken")
        if self.savepoints.in_progress is not None:
            raise ConfigError("a savepoint is already in progress; wait for it (GET /savepoints/<id>)")
        directory = self._require_storage().new_savepoint_dir(target)
        return self.savepoints.request(coordinator, directory, stop=stop, key=key)

    async def cancel(self) -> None:
        """``POST /cancel``: stops the job (checkpoints are deleted by ``run`` on DELETE_ON_CANCELLATION).

        Also between attempts: a job waiting out its restart delay (or whose attempt is failing) ends
        cancelled instead of starting the next attempt.
        """
        self._cancel_requested.set()
        if self._current is not None:
            self._current.cancel()
