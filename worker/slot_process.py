"""The slot's process: tuning the interpreter, dying with a local parent, warming S3, running the ``Slot``.

``run_slot`` is the entry of ``streamjob slot`` (``cli.main``), of ``streamjob worker``'s child
process and (through ``run_prestarted``) of the slots ``streamjob run`` forks (``jobmaster/forked.py``):
it sets up the process (a whole-line stdout, fewer garbage collections, a short GIL switch
interval, PR_SET_PDEATHSIG for local slots, boto3 imported on a thread when S3 is named) and runs
``slot.Slot`` on uvloop, optionally under cProfile.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import uvloop  # here, not in run_slot: a prestarted slot imports it before its address comes

from streamjob.worker import gc_pause
from streamjob.worker.cli_values import read_jobmaster_address
from streamjob.worker.errors import ConfigError
from streamjob.worker.loader import LoadedJob, load_job
from streamjob.worker.protocol.auth import require_job_secret
from streamjob.worker.protocol.tls import (
    internal_tls_from_env,
)
from streamjob.worker.slot import Slot
from streamjob.worker.whole_lines import WholeLineStdout

log = logging.getLogger(__name__)


def _tune_interpreter() -> None:
    """Fewer, cheaper garbage collections and a shorter GIL switch interval (measured in bench/).

    Records are short-lived tuples: the default gen-0 threshold makes the collector run every few
    hundred allocations (8-16 % of a slot's CPU). A short switch interval lets the snapshot thread
    get the GIL promptly while the task loop is busy, which keeps checkpoint durations short.
    """
    gc_pause.resume()  # the collector was off while the slot started (cli.main); freezes what it imported
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    sys.setswitchinterval(0.0005)


def _die_with_parent() -> None:
    """Linux: SIGKILL this slot when its local JobMaster process dies, so no slot outlives its job."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        log.debug("PR_SET_PDEATHSIG is not available")


#: Environment variables that say this process will reach S3 (the operator sets the first for S3 storage).
_S3_HINTS = (
    "STREAMJOB_S3_ENDPOINT",
    "AWS_ACCESS_KEY_ID",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


def _prewarm_s3() -> None:
    """Imports the S3 store (boto3, ~0.1-0.2 s of CPU) on a thread while the slot waits for its JobMaster.

    A deployment opens the checkpoint storage first thing, and after a failover the restore reads
    from it: importing boto3 then would put that time between the JobMaster's deploy message and the
    first record. Only when the environment names S3 (local jobs on file:// storage never load boto3).
    """
    if not any(os.environ.get(name) for name in _S3_HINTS):
        return

    def load() -> None:
        try:
            import streamjob.worker.storage.s3_store  # noqa: F401
        except Exception:  # a broken boto3 install surfaces when the deployment opens the storage
            log.debug("prewarming the S3 store failed", exc_info=True)

    threading.Thread(target=load, name="prewarm-s3", daemon=True).start()


def run_slot(jobmaster: str, data_host: str, secret: str, *, loader: JobLoader = load_job) -> int:
    """Process entry: runs a slot on uvloop (``STREAMJOB_PROFILE_DIR`` writes a cProfile per slot).

    Internal TLS comes from ``STREAMJOB_INTERNAL_TLS_*`` (``protocol/tls.py``): the slot needs it before
    its Deploy message, to reach the control port. ``loader``: how a deployment gets the job (``Slot``).
    """
    tls = internal_tls_from_env(os.environ)
    if (stdout := sys.stdout) is not None:
        stdout.flush()
        sys.stdout = WholeLineStdout(stdout.fileno())  # prints of several slots never cut into each other

    _tune_interpreter()
    _prewarm_s3()
    if os.environ.get("STREAMJOB_DIE_WITH_PARENT") == "1":
        _die_with_parent()
    profile_dir = os.environ.get("STREAMJOB_PROFILE_DIR")
    if not profile_dir:
        code = uvloop.run(Slot(jobmaster, data_host, secret, tls=tls, loader=loader).run())
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # do not wait for snapshot threads of an attempt that is over
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        return uvloop.run(Slot(jobmaster, data_host, secret, tls=tls, loader=loader).run())
    finally:
        profiler.disable()
        profiler.dump_stats(str(Path(profile_dir) / f"slot-{os.getpid()}.prof"))


JobLoader = Callable[[str, list[str]], LoadedJob]


def preloaded_loader(job: tuple[str, list[str]]) -> JobLoader:
    """Loads ``job`` (entrypoint, arguments) now; the first deployment of that job gets it as loaded.

    A forked slot does this while it waits for its address, in step with ``streamjob run`` loading the
    same job, instead of after its Deploy message: the job's imports (its libraries) then stay off the
    path to the first record. Every later deployment, and one of another job, loads afresh
    (``load_job``): an attempt never inherits the function objects of the one before. A job that fails
    to load here loads again at its deployment, which reports why as any slot would.
    """
    try:
        kept = [load_job(*job)]
    except (Exception, SystemExit):
        log.debug("preloading the job failed; its deployment loads it again", exc_info=True)
        kept = []

    def loader(entrypoint: str, args: list[str]) -> LoadedJob:
        if kept and (entrypoint, list(args)) == (job[0], list(job[1])):
            return kept.pop()
        kept.clear()
        return load_job(entrypoint, args)

    return loader


def run_prestarted(job: tuple[str, list[str]] | None = None) -> int:
    """Entry of a slot forked by ``streamjob run``: as ``streamjob slot --jobmaster -`` would run it.

    Logging as ``cli.main`` sets it up for ``streamjob slot`` (INFO unless ``STREAMJOB_LOG_LEVEL``, to
    standard error: the slot's log file); the job's secret from the environment; ``job`` (entrypoint,
    arguments) loaded while it waits (``preloaded_loader``); the control port's address from standard
    input (the launcher's pipe).
    """
    level = os.environ.get("STREAMJOB_LOG_LEVEL") or "INFO"
    root = logging.getLogger()
    for handler in root.handlers[:]:  # the parent's: dropped, not closed (their files are closed in this process)
        root.removeHandler(handler)
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        secret = require_job_secret()
        loader = preloaded_loader(job) if job is not None else load_job
        with os.fdopen(0, "rb", closefd=False) as pipe:
            jobmaster = read_jobmaster_address(pipe)
        return run_slot(jobmaster, "127.0.0.1", secret, loader=loader)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
