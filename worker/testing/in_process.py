"""``run_in_process``: a whole job — JobMaster and slots — as coroutines on one event loop in the test's process.

Part of the public test kit (``streamjob.worker.testing``), the in-process counterpart of
``LocalJob``. Built from the same parts as ``streamjob run`` (``local.py``): ``resolve_plan``, the
``JobMaster`` with its restart loop, its ``ControlServer`` on a localhost port, and real ``Slot``
objects that register, authenticate with the run's job secret and exchange records over localhost
TCP with the real protocol. Only the launcher differs: ``InProcessLauncher`` starts each slot as a
coroutine instead of a process, and a slot builds its tasks from a copy of the test's pipeline
instead of importing an entrypoint (every slot process builds its own pipeline in production, so
every slot gets its own ``copy.deepcopy`` of it; the kit's sources, sinks and clock share
themselves across copies). No REST server runs.

Crash and resume in three lines::

    out = []
    result = run_in_process(build(TestingSource([1, 2, TestingSource.ABORT, 3]), TestingSink(out)), parallelism=2)
    assert result.restarts == 1 and sorted(out) == expected
"""

from __future__ import annotations

import asyncio
import copy
import gc
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from streamjob.worker.api.environment import StreamExecutionEnvironment
from streamjob.worker.config import CheckpointOverrides, JobConfig, RestartStrategy, describe_validation_error
from streamjob.worker.errors import ConfigError, PipelineError
from streamjob.worker.jobmaster.control import ControlServer
from streamjob.worker.jobmaster.jobmaster import JobMaster
from streamjob.worker.jobmaster.plan import resolve_plan
from streamjob.worker.loader import LoadedJob
from streamjob.worker.protocol.auth import new_job_secret
from streamjob.worker.protocol.rest import JobState
from streamjob.worker.runtime.context import use_processing_clock
from streamjob.worker.slot import Slot
from streamjob.worker.storage.stores import StoreFactory
from streamjob.worker.testing.local_job import JobError
from streamjob.worker.testing.memory import InMemoryStorage

__all__ = ["InProcessLauncher", "InProcessResult", "run_in_process", "run_in_process_async"]

#: The checkpoint interval of a job that configured none: crash-and-resume tests need checkpoints.
DEFAULT_INTERVAL_MS = 100


@dataclass(frozen=True)
class InProcessResult:
    """How an in-process run ended, and what happened on the way."""

    state: JobState
    """FINISHED, CANCELED or FAILED (the JobMaster's final state; a ``str`` enum)."""
    exit_code: int
    attempts: int
    """Attempts deployed (1 + restarts, unless an attempt failed before it was deployed)."""
    restarts: int
    failures: list[str]
    """The reason of every failed attempt, in order."""
    checkpoints: int
    """Checkpoints completed in this run (the final one at end of input included)."""
    job_id: str
    checkpoints_uri: str
    events: list[tuple[str, dict[str, Any]]] = field(repr=False)
    """Every JobMaster event (``running``, ``checkpoint``, ``restarting``...) with its data."""


class InProcessLauncher:
    """The ``Launcher`` of ``run_in_process``: each slot is a coroutine on the running loop, not a process.

    ``stop_all`` is the in-process SIGKILL: it cancels the slots' tasks and coroutines at once, so
    nothing of a failed attempt runs on beside the next one.
    """

    def __init__(
        self,
        secret: str,
        loader: Callable[[str, list[str]], LoadedJob],
        work_dir: Path,
        stores: StoreFactory | None = None,
    ) -> None:
        """``secret``: the run's job secret; ``loader``: builds each slot's copy of the job; ``stores``: its storage."""
        self.secret = secret
        self.standby = 0  # no spare slot coroutines: a lost one is replaced
        self.stores = stores
        self.loader = loader
        self.work_dir = work_dir
        self.current: list[tuple[Slot, asyncio.Task[int]]] = []
        self.started: list[tuple[Slot, asyncio.Task[int]]] = []

    def start(self, slots: int, jobmaster: str, attempt: int) -> None:
        """Starts ``slots`` slot coroutines that register at ``jobmaster``."""
        self.current = [self._start_one(index, jobmaster, attempt) for index in range(slots)]

    def replace_exited(self, jobmaster: str, attempt: int) -> int:
        """Starts a new slot coroutine for every one of the last attempt that ended; returns how many."""
        replaced = 0
        for index, (_, task) in enumerate(self.current):
            if task.done():
                self.current[index] = self._start_one(index, jobmaster, attempt)
                replaced += 1
        return replaced

    def resize(self, slots: int, jobmaster: str, attempt: int) -> None:
        """A rescale in place: forgets the slots that ended (let go), cancels any surplus, starts the missing."""
        alive = [entry for entry in self.current if not entry[1].done()]
        for _, task in alive[slots:]:
            task.cancel()
        self.current = alive[:slots]
        for index in range(len(self.current), slots):
            self.current.append(self._start_one(index, jobmaster, attempt))

    def _start_one(self, index: int, jobmaster: str, attempt: int) -> tuple[Slot, asyncio.Task[int]]:
        work = self.work_dir / f"attempt-{attempt}-slot-{index}"
        work.mkdir(parents=True, exist_ok=True)
        slot = Slot(jobmaster, "127.0.0.1", self.secret, work_dir=work, loader=self.loader, stores=self.stores)
        task = asyncio.get_running_loop().create_task(slot.run(), name=f"streamjob-slot-{index}-attempt-{attempt}")
        self.started.append((slot, task))
        return slot, task

    def stop_all(self, grace_s: float = 0.0) -> None:
        """Cancels every running slot of the attempt with all its tasks (the slots' ``Bye`` came first)."""
        for slot, task in self.current:
            if task.done():
                continue
            for running in list(slot.running):
                running.cancel()
            for t in slot.tasks.values():
                t.cancel()
            task.cancel()
        self.current = []

    def pids(self) -> list[int]:
        """This process, once per running slot."""
        return [os.getpid() for _, task in self.current if not task.done()]

    def exited(self) -> list[tuple[int, int, Path]]:
        """(index, exit code, work dir) of this attempt's slots that ended."""
        ended = []
        for index, (slot, task) in enumerate(self.current):
            if task.done():
                code = 1 if task.cancelled() or task.exception() is not None else task.result()
                ended.append((index, code, slot.work_dir / "slot.log"))
        return ended

    async def wait_all(self) -> None:
        """Cancels what still runs and waits until every slot coroutine ever started has ended."""
        for slot, task in self.started:
            if not task.done():
                for running in list(slot.running):
                    running.cancel()
                task.cancel()
        await asyncio.gather(*(task for _, task in self.started), return_exceptions=True)
        for slot, _ in self.started:
            await asyncio.gather(*slot.running, return_exceptions=True)
            slot.executor.shutdown(wait=False)


def _copying_loader(
    env: StreamExecutionEnvironment, job_name: str, module: str
) -> Callable[[str, list[str]], LoadedJob]:
    def load(entrypoint: str, args: list[str]) -> LoadedJob:
        try:
            copied = copy.deepcopy(env)
        except Exception as err:
            raise PipelineError(
                f"run_in_process gives every slot its own copy of the pipeline (each slot process builds its own "
                f"in production), but copy.deepcopy failed: {type(err).__name__}: {err}; create clients, locks and "
                "files in the functions' open() instead of their constructors"
            ) from err
        return LoadedJob(copied, job_name, module)

    return load


async def run_in_process_async(
    env: StreamExecutionEnvironment,
    *,
    parallelism: int | None = None,
    restore: str | None = None,
    storage: str | Path | InMemoryStorage | None = None,
    clock: Callable[[], int] | None = None,
    name: str = "in-process",
    max_restarts: int = 3,
    timeout_s: float = 120.0,
    module: str = "__main__",
    raise_on_failure: bool = True,
) -> InProcessResult:
    """``run_in_process`` on the running event loop (for async tests); see there."""
    if not isinstance(env, StreamExecutionEnvironment):
        raise TypeError(f"run_in_process needs the job's StreamExecutionEnvironment, got {type(env).__name__}")
    if not isinstance(max_restarts, int) or max_restarts < 0:
        raise ValueError(f"run_in_process max_restarts must be an int >= 0, got {max_restarts!r}")
    if storage is None:
        storage = InMemoryStorage()
    stores = storage if isinstance(storage, InMemoryStorage) else None
    if isinstance(storage, InMemoryStorage):
        checkpoints_uri = storage.checkpoints_uri
    else:
        checkpoints_uri = Path(storage).resolve().as_uri() if "://" not in str(storage) else str(storage)
    overrides = CheckpointOverrides()
    if env.checkpoint_config.settings().interval_ms is None:
        overrides = CheckpointOverrides(interval_ms=DEFAULT_INTERVAL_MS)
    try:
        config = JobConfig(
            name=name,
            entrypoint=f"in-process:{module}",
            parallelism=parallelism,
            checkpoint=overrides,
            checkpoints_uri=checkpoints_uri,
            restore_from=restore,
            restart=RestartStrategy(kind="fixed-delay", attempts=max_restarts, delay_ms=0),
            restart_in_place=True,
        )
    except ValidationError as err:
        raise ConfigError(f"run_in_process: {describe_validation_error(err)}") from None
    loaded = LoadedJob(env, env.job_name or name, module, env.restore_path)
    events: list[tuple[str, dict[str, Any]]] = []
    plan = resolve_plan(config, loaded, default_checkpoints_uri=checkpoints_uri)
    secret = new_job_secret()
    own_dir = Path(tempfile.mkdtemp(prefix="streamjob-in-process-"))  # the slots' work dirs, removed at the end
    launcher = InProcessLauncher(secret, _copying_loader(env, loaded.job_name, module), own_dir / "slots", stores)
    jm = JobMaster(plan, launcher=launcher, events=lambda kind, data: events.append((kind, dict(data))), stores=stores)
    control = ControlServer(jm, secret)
    clock_token = use_processing_clock(clock) if clock is not None else None
    frozen_before = gc.get_freeze_count()
    try:
        jm.jobmaster_address = f"127.0.0.1:{await control.start('127.0.0.1', 0)}"
        try:
            code = await asyncio.wait_for(jm.run(), timeout_s)
        except TimeoutError:
            raise JobError(
                f"the in-process job did not end within {timeout_s:.0f} s (state {jm.state}); events: {events[-10:]}"
            ) from None
    finally:
        launcher.stop_all()
        await launcher.wait_all()
        await control.close()
        jm.executor.shutdown(wait=False)
        if clock_token is not None:
            clock_token.var.reset(clock_token)
        if frozen_before == 0:
            gc.unfreeze()  # a slot freezes the heap when its tasks start (slot._start): undo it in a test process
        shutil.rmtree(own_dir, ignore_errors=True)
    result = InProcessResult(
        state=jm.state,
        exit_code=code,
        attempts=sum(1 for kind, _ in events if kind == "running"),
        restarts=jm.restarts,
        failures=[str(data.get("reason")) for kind, data in events if kind in ("restarting", "failed")],
        checkpoints=sum(1 for kind, _ in events if kind == "checkpoint"),
        job_id=jm.job_id,
        checkpoints_uri=checkpoints_uri,
        events=events,
    )
    if raise_on_failure and result.state is JobState.FAILED:
        raise JobError(f"the in-process job FAILED ({len(result.failures)} failed attempts): {jm.failure}")
    return result


def run_in_process(
    env: StreamExecutionEnvironment,
    *,
    parallelism: int | None = None,
    restore: str | None = None,
    storage: str | Path | InMemoryStorage | None = None,
    clock: Callable[[], int] | None = None,
    name: str = "in-process",
    max_restarts: int = 3,
    timeout_s: float = 120.0,
    module: str | None = None,
    raise_on_failure: bool = True,
) -> InProcessResult:
    """Runs the job built in ``env`` to its end in this process; returns how it ended.

    - ``parallelism``: the job's default parallelism (as ``streamjob run --parallelism``).
    - ``storage``: where checkpoints go: an ``InMemoryStorage`` (the default: a fresh one) or a
      checkpoints directory or URI; give the same one to a later run with ``restore="latest"`` (or a
      snapshot URI) to resume where this one stopped.
    - ``clock``: the processing-time clock of the run (a ``FakeClock``).
    - ``max_restarts``: failed attempts are restarted at once from the latest checkpoint, at most
      this often; then the job fails.
    - ``module``: the module whose dataclasses, named tuples and enums are the job's record and state
      types (as a job file's are); default: the caller's module.
    - A job that ends FAILED raises ``JobError`` with the reason, unless ``raise_on_failure=False``.

    A job without a checkpoint interval gets 100 ms. Must not be called from a running event
    loop: async tests await ``run_in_process_async``.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # no loop runs here: the run gets its own
    else:
        raise RuntimeError("run_in_process cannot run inside a running event loop: await run_in_process_async(...)")
    if module is None:
        module = str(sys._getframe(1).f_globals.get("__name__", "__main__"))
    coro = run_in_process_async(
        env,
        parallelism=parallelism,
        restore=restore,
        storage=storage,
        clock=clock,
        name=name,
        max_restarts=max_restarts,
        timeout_s=timeout_s,
        module=module,
        raise_on_failure=raise_on_failure,
    )
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.run(coro)
    return uvloop.run(coro)
