"""Local mode (the MiniCluster behind ``streamjob run``): a JobMaster in this process, slots as children.

Same code paths as on Kubernetes; only the launcher differs (local processes, restarted by the
JobMaster under the restart strategy). Prints progress to the terminal: the job's REST address and
where its REST token is, every completed checkpoint, failures, recoveries and record counts.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import re
import signal
import socket
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from streamjob.worker import gc_pause
from streamjob.worker.config import CheckpointSettings, ExternalizedCheckpointCleanup, JobConfig
from streamjob.worker.errors import StreamJobError
from streamjob.worker.jobmaster.launcher import LocalProcessLauncher
from streamjob.worker.protocol.auth import REST_TOKEN_ENV, derive_rest_token, load_job_secret, new_job_secret

if TYPE_CHECKING:
    from streamjob.worker.jobmaster.jobmaster import JobMaster
    from streamjob.worker.loader import LoadedJob

# What this process and every slot need (the API, the job graph, the control protocol, the
# checkpoint storage, uvloop) is imported before ``streamjob run`` forks its slots (``import_shared``),
# which inherit it; the JobMaster's own stack (the JobMaster and its control server) is imported after
# the fork, while the slots import theirs (the runtime), and the REST server (aiohttp,
# prometheus_client) only once a client connects to the REST port (``_serve_rest``).

#: ``0``: spawn the first attempt's slots too (a new interpreter each) instead of forking them.
SLOT_FORK_ENV = "STREAMJOB_SLOT_FORK"
DEFAULT_CHECKPOINT_DIR = Path(tempfile.gettempdir()) / "streamjob" / "checkpoints"


def slug(name: str) -> str:
    """A job name usable in storage paths and Kubernetes names."""
    cleaned = re.sub(r"[^a-z0-9.-]+", "-", name.lower()).strip("-.")
    return cleaned[:63] or "job"


def restore_kind(data: dict[str, Any]) -> str:
    """``checkpoint`` or ``savepoint`` for a ``running`` event.

    The event's ``kind`` (the snapshot metadata's) when given; else from the directory name:
    checkpoints live in ``chk-<n>`` (they reference their lineage's files, so they are never
    moved), anything else is a savepoint (self-contained, relocatable, any directory name).
    """
    from streamjob.worker.storage.layout import parse_checkpoint_dir

    if data.get("kind") in ("checkpoint", "savepoint"):
        return str(data["kind"])
    uri = str(data.get("restored_from") or "").removesuffix("/_metadata").rstrip("/")
    return "checkpoint" if parse_checkpoint_dir(uri.rsplit("/", 1)[-1]) is not None else "savepoint"


def cancel_notice(settings: CheckpointSettings) -> str:
    """What Ctrl-C does to this job's snapshots, as the job's externalized cleanup decides."""
    if settings.externalized_cleanup is ExternalizedCheckpointCleanup.DELETE_ON_CANCELLATION:
        return (
            "interrupted: cancelling the job and deleting its checkpoints (externalized cleanup "
            "DELETE_ON_CANCELLATION; savepoints are kept)"
        )
    if settings.interval_ms is None:
        return "interrupted: cancelling the job (checkpointing is off: there is no checkpoint to continue from)"
    return "interrupted: cancelling the job (checkpoints are kept: `--restore latest` continues it)"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def size_text(data: dict[str, Any]) -> str:
    """``9.4 MiB`` or, when a checkpoint wrote less than it references, ``9.4 MiB, 96.0 KiB written``."""
    full = _size(data["size"])
    written = data.get("incremental_size")
    if written is None or written >= data["size"]:
        return full
    return f"{full}, {_size(written)} written"


class Progress:
    """Terminal progress: one line per event, and a record count while nothing else happens."""

    def __init__(self, out: TextIO | None = None, quiet: bool = False) -> None:
        self.out = out or sys.stderr
        self.quiet = quiet
        self.last_line = time.monotonic()
        self.launcher: LocalProcessLauncher | None = None
        self.rate_from = (0, self.last_line)
        """(records, monotonic time) of the last printed count: the next rate is measured from it."""

    def line(self, text: str) -> None:
        """Prints one progress line."""
        if not self.quiet:
            self.out.write(f"[streamjob] {text}\n")
            self.out.flush()
        self.last_line = time.monotonic()

    def event(self, kind: str, data: dict[str, Any]) -> None:
        """The JobMaster's event hook."""
        if kind == "running":
            restored = (
                f", restored from {restore_kind(data)} {data['checkpoint']}"
                if data.get("checkpoint") is not None
                else ""
            )
            self.rate_from = (0, time.monotonic())  # each attempt counts its records from 0
            self.line(f"attempt {data['attempt']} running{restored}")
        elif kind in ("checkpoint", "savepoint"):
            self.line(
                f"{kind} {data['id']} completed in {data['duration_ms']} ms ({size_text(data)}) "
                f"— {data['records']:,} records read — {data['location']}"
            )
            self.rate_from = (data["records"], self.last_line)
        elif kind == "checkpoint_failed":
            self.line(f"checkpoint {data['id']} failed: {data['reason']}")
        elif kind == "restarting":
            self.line(f"FAILURE: {data['reason']}")
            self.line(
                f"restarting in {data['delay_ms'] / 1000:.1f} s from the latest checkpoint (restart {data['restart']})"
            )
        elif kind == "rescaling":
            self.line(f"rescaling {data['from']} → {data['to']} in place: stop-with-savepoint, then the next attempt")
        elif kind == "rescaled":
            self.line(f"rescaled {data['from']} → {data['to']}: running again {data['gap_ms']} ms after the request")
        elif kind == "rescale_failed":
            self.line(f"rescale {data['from']} → {data['to']} failed, running on at {data['from']}: {data['reason']}")
        elif kind == "failed":
            self.line(f"job FAILED: {data['reason']}")
        elif kind in ("finished", "canceled"):
            self.line(f"job {kind.upper()}")

    def records_line(self, total: int, now: float) -> str:
        """``N records read (R/s)``; R since the last printed count, as slots report totals only now and then."""
        since, since_t = self.rate_from
        if total < since:  # a new attempt counts from 0
            since = 0
        self.rate_from = (total, now)
        return f"{total:,} records read ({(total - since) / max(1e-9, now - since_t):,.0f}/s)"

    async def report_records(self, jm: JobMaster) -> None:
        """Prints the record count every few seconds while no other line was printed."""
        from streamjob.worker.protocol.rest import JobState

        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            if now - self.last_line >= 5 and jm.state is JobState.RUNNING:
                self.line(self.records_line(jm.records_in_total(), now))


def token_notice(path: Path) -> str:
    """The progress line saying where this run's REST token is and how to use it."""
    return (
        f"REST token in {path} (needed to cancel or take savepoints): export {REST_TOKEN_ENV}=$(cat {path}) "
        f"or streamjob savepoint --token-file {path}"
    )


#: What this process and every slot import: the API, the job graph, the control protocol, the checkpoint storage.
SHARED_MODULES = (
    "uvloop",
    "streamjob.worker.failures",
    "streamjob.worker.graph.job_graph",
    "streamjob.worker.loader",
    "streamjob.worker.protocol.handshake",
    "streamjob.worker.storage.checkpoint_storage",
)


def import_shared() -> None:
    """Imports ``SHARED_MODULES`` before ``streamjob run`` forks the slots.

    A forked slot inherits them, so each is imported once per run instead of once per process, and
    the slots' remaining imports (the runtime) are as short as the JobMaster's (its own stack).
    """
    for name in SHARED_MODULES:
        importlib.import_module(name)


def local_launcher(config: JobConfig, work_dir: Path | None = None, *, standby: int = 0) -> LocalProcessLauncher:
    """The slot launcher of a local run: its work directory (logs), this run's job secret, internal TLS.

    The secret is ``STREAMJOB_JOB_SECRET[_FILE]`` when set, else a new one (protocol/auth.py); the
    slots get it, and the internal TLS files, by environment. ``standby``: spare slot processes kept
    beside the job's (``streamjob run --standby-slots``). ``STREAMJOB_SLOT_FORK=0`` spawns every slot
    as a new interpreter instead of forking the first ones (``jobmaster/forked.py``).
    """
    work = work_dir or Path(tempfile.mkdtemp(prefix=f"streamjob-{config.name}-"))
    secret = load_job_secret() or new_job_secret()
    fork = os.environ.get(SLOT_FORK_ENV, "1") != "0"
    return LocalProcessLauncher(work / "logs", secret=secret, tls=config.internal_tls, standby=standby, fork=fork)


def _slots_note(slots: int, parallelism: int) -> str:
    """The start line's slot count, when slot sharing groups make it differ from the parallelism."""
    return f" in {slots} slots (slot sharing groups)" if slots != parallelism else ""


def first_attempt_slots(config: JobConfig, loaded: LoadedJob) -> int | None:
    """The slots the job's first attempt needs (``JobGraph.slots``, as ``resolve_plan`` builds the graph).

    None when the graph cannot be built: ``resolve_plan`` then reports why, with no slot started.
    """
    from streamjob.worker.graph.job_graph import build_job_graph

    env = loaded.env
    try:
        graph = build_job_graph(
            env.transformations,
            default_parallelism=env.parallelism,
            max_parallelism=config.max_parallelism or env.max_parallelism,
            parallelism_override=config.parallelism,
        )
    except StreamJobError:
        return None
    return graph.slots


async def _run(
    config: JobConfig,
    loaded: LoadedJob,
    progress: Progress,
    work_dir: Path,
    rest_token_file: Path | None,
    launcher: LocalProcessLauncher,
    job_secret: str,
) -> tuple[int, JobMaster]:
    from streamjob.worker.jobmaster.control import ControlServer
    from streamjob.worker.jobmaster.jobmaster import JobMaster
    from streamjob.worker.jobmaster.plan import resolve_plan
    from streamjob.worker.jobmaster.rest_socket import bind_rest_socket
    from streamjob.worker.protocol.rest import JobState
    from streamjob.worker.protocol.tls import check_internal_pair, internal_server_context, rest_server_context
    from streamjob.worker.rest_token_file import default_token_path, write_token_file

    plan = resolve_plan(config, loaded, default_checkpoints_uri=DEFAULT_CHECKPOINT_DIR.as_uri())
    rest_token = derive_rest_token(job_secret)
    if config.internal_tls:
        check_internal_pair(config.internal_tls)  # the slots' TLS errors, said once at start
    internal_tls = internal_server_context(config.internal_tls) if config.internal_tls else None
    rest_tls = rest_server_context(config.rest_tls) if config.rest_tls else None
    # The REST port listens now (a taken port fails the run here); its HTTP server follows the first client.
    rest_sock = bind_rest_socket("127.0.0.1", config.rest_port)
    port = int(rest_sock.getsockname()[1])
    loop = asyncio.get_running_loop()
    jm = JobMaster(plan, launcher=launcher, events=progress.event)
    progress.launcher = launcher
    control = ControlServer(jm, job_secret, tls=internal_tls)
    try:
        control_port = await control.start("127.0.0.1", 0)  # local slots only: any free port
        jm.jobmaster_address = f"127.0.0.1:{control_port}"
        token_path = rest_token_file or default_token_path(config.name, port)
        write_token_file(token_path, rest_token)
    except BaseException:
        rest_sock.close()
        await control.close()
        raise
    scheme = "https" if rest_tls else "http"
    shape = f"parallelism {plan.graph.parallelism}{_slots_note(plan.graph.slots, plan.graph.parallelism)}"
    progress.line(
        f"job '{config.name}' at {shape}; REST API {scheme}://127.0.0.1:{port}; "
        f"checkpoints in {plan.checkpoints_uri}; worker logs in {work_dir / 'logs'}"
    )
    progress.line(token_notice(token_path))
    rest = asyncio.create_task(_serve_rest(jm, rest_sock, rest_token, rest_tls))
    reporter = asyncio.create_task(progress.report_records(jm))
    cancel_task: list[asyncio.Task[None]] = []

    def interrupt() -> None:
        progress.line(cancel_notice(plan.settings))
        cancel_task.append(asyncio.create_task(jm.cancel()))

    try:
        loop.add_signal_handler(signal.SIGINT, interrupt)
        loop.add_signal_handler(signal.SIGTERM, interrupt)
    except (NotImplementedError, RuntimeError):
        pass
    gc_pause.resume()  # up: the deployment and the job's records run with the collector on
    try:
        code = await jm.run()
    finally:
        reporter.cancel()
        launcher.stop_all(grace_s=3.0 if jm.state is JobState.FINISHED else 0.0)
        if jm.savepoints.stop_requested:
            await asyncio.sleep(2.0)  # let `streamjob savepoint --stop` read the result before the API goes
        await _stop_rest(rest, rest_sock)
        await control.close()
        jm.executor.shutdown(wait=False)
        if rest_token_file is None:
            token_path.unlink(missing_ok=True)  # the token dies with the run; a chosen file is the user's
    return code, jm


async def _serve_rest(jm: JobMaster, sock: socket.socket, rest_token: str, tls: ssl.SSLContext | None) -> Any:
    """Serves the REST API on ``sock`` from its first client's connection on; the runner.

    The HTTP stack (aiohttp, ~0.1 s of CPU to import) is loaded only when a client connects: a run
    nobody queries never pays for it, and it never competes with the deployment or the first records
    for the CPU. The connection waits in the socket's backlog meanwhile and is served as any other.
    """
    loop = asyncio.get_running_loop()
    connected: asyncio.Future[None] = loop.create_future()

    def knocked() -> None:
        if not connected.done():
            connected.set_result(None)

    loop.add_reader(sock.fileno(), knocked)
    try:
        await connected
    finally:
        loop.remove_reader(sock.fileno())
    from streamjob.worker.jobmaster.rest import serve

    runner, _ = await serve(jm, "127.0.0.1", 0, rest_token=rest_token, tls=tls, sock=sock)
    return runner


async def _stop_rest(rest: asyncio.Task[Any], sock: socket.socket) -> None:
    """Stops the REST server, or its start when the job ended first, and closes its socket."""
    if not rest.done():
        rest.cancel()
    try:
        runner = await rest
    except asyncio.CancelledError:
        runner = None
    except Exception:  # the API never served: the job's own outcome is what the run reports
        logging.getLogger(__name__).exception("the REST API failed to start")
        runner = None
    if runner is not None:
        await runner.cleanup()
    sock.close()


def run_local(
    config: JobConfig,
    *,
    loaded: LoadedJob | None = None,
    progress: Progress | None = None,
    work_dir: Path | None = None,
    rest_token_file: Path | None = None,
    launcher: LocalProcessLauncher | None = None,
) -> int:
    """Runs a job to its end on this machine; returns the exit code.

    The REST token goes to ``rest_token_file``, by default a per-run file removed when the run ends.
    ``launcher``: one from ``local_launcher`` whose slots were prestarted before the job was loaded
    (``streamjob run``); its work directory and secret are this run's.
    """
    if loaded is None:
        from streamjob.worker.loader import load_job

        loaded = load_job(config.entrypoint, config.args)
    if launcher is None:
        launcher = local_launcher(config, work_dir)
    job_secret = launcher.secret
    work = launcher.log_dir.parent
    slots = first_attempt_slots(config, loaded)
    if slots is not None:
        # In this (main) thread, which lives as long as the process: the slots' PR_SET_PDEATHSIG follows it.
        # Spawned, not forked: the job's modules ran here, and a slot must import them afresh as on Kubernetes.
        launcher.prestart(slots, attempt=config.attempt, fork=False)
    try:
        main = _run(config, loaded, progress or Progress(), work, rest_token_file, launcher, job_secret)
        try:
            import uvloop
        except ImportError:
            code, _ = asyncio.run(main)
        else:
            code, _ = uvloop.run(main)
    finally:
        launcher.stop_all()  # slots still waiting for an address when the start failed
    return code


def run_environment(env: Any, *, job_name: str, restore: str | None = None, **options: Any) -> int:
    """``env.execute()`` from a script run with ``python job.py``: runs it locally.

    The API's default ``PipelineExecutor``, registered as the ``streamjob.executors`` entry point
    ``local`` in pyproject.toml (the API never imports this module).
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None:
        from streamjob.worker.errors import EntrypointError

        raise EntrypointError(
            "env.execute() outside streamjob needs a job file: run `python job.py` or `streamjob run job.py`"
        )
    from streamjob.worker.loader import LoadedJob

    config = JobConfig(
        name=slug(job_name),
        entrypoint=str(Path(path).resolve()),
        restore_from=restore,
        rest_port=options.get("rest_port", 0),
        checkpoints_uri=options.get("checkpoints_uri"),
    )
    return run_local(config, loaded=LoadedJob(env, job_name, Path(path).stem))
