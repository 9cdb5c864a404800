"""The ``streamjob`` command: run a job locally, run the JobMaster or a worker, take savepoints, list snapshots.

Every error streamjob raises on purpose prints one line (``error: ...``) and exits non-zero;
tracebacks are for bugs only (``--debug`` shows them for everything). The options and their parsing
are in ``cli_parser``; this module runs the parsed command.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

# Only what ``main`` needs before it parses the arguments: the rest (the argument parser and its
# pydantic models among it) is imported once the garbage collector is off (``main``).
from streamjob.worker import gc_pause
from streamjob.worker.errors import ConfigError, StreamJobError
from streamjob.worker.protocol.auth import require_job_secret


def _cmd_run(args: argparse.Namespace) -> int:
    from streamjob.worker.cli_tls import run_tls_config
    from streamjob.worker.cli_values import DEBLOAT_PREFIX, storage_uri
    from streamjob.worker.config import JobConfig, parse_job_config
    from streamjob.worker.local import Progress, import_shared, local_launcher, run_local, slug

    overrides: dict[str, Any] = {}
    if args.checkpoint_interval is not None:
        overrides["interval_ms"] = args.checkpoint_interval
    if args.mode:
        overrides["mode"] = args.mode
    debloat: dict[str, Any] = {}
    for name, value in args.defines:
        if name.startswith(DEBLOAT_PREFIX):
            debloat[name.removeprefix(DEBLOAT_PREFIX)] = value
        else:
            overrides[name] = value
    raw = {
        "name": slug(args.name or Path(args.entrypoint.split(":")[0]).stem),
        "entrypoint": args.entrypoint,
        "args": args.args,
        "parallelism": args.parallelism,
        "max_parallelism": args.max_parallelism,
        "state_backend": args.state_backend,
        "checkpoint": overrides,
        "buffer_debloat": debloat,
        "checkpoints_uri": storage_uri(args.checkpoint_dir) if args.checkpoint_dir else None,
        "savepoints_uri": storage_uri(args.savepoint_dir) if args.savepoint_dir else None,
        "restore_from": args.restore if args.restore in (None, "latest") else storage_uri(args.restore),
        "allow_non_restored_state": args.allow_non_restored_state,
        "rest_port": args.rest_port,
        "allowed_savepoint_roots": args.allowed_savepoint_roots,
        **run_tls_config(args),
    }
    source = "(from the command-line flags)"
    # The slots start now, while this process loads the job and imports the JobMaster: a guess of
    # their number (-p, else 1) that run_local corrects once the job's graph is known.
    provisional: JobConfig = parse_job_config(raw, source=source)
    launcher = local_launcher(provisional, standby=args.standby_slots)
    import_shared()  # once, here: the forked slots inherit what both need
    launcher.prestart(args.parallelism or 1, attempt=provisional.attempt, job=(args.entrypoint, list(args.args)))
    try:
        from streamjob.worker.loader import load_job

        loaded = load_job(args.entrypoint, args.args)
        raw["name"] = slug(
            args.name
            or (loaded.job_name if loaded.job_name != "streamjob" else Path(args.entrypoint.split(":")[0]).stem)
        )
        config: JobConfig = parse_job_config(raw, source=source)
        token_file = args.rest_token_file.absolute() if args.rest_token_file else None  # printed: say where it is
        return run_local(
            config, loaded=loaded, progress=Progress(quiet=args.quiet), rest_token_file=token_file, launcher=launcher
        )
    finally:
        launcher.stop_all()  # slots still waiting when loading the job failed


def _cmd_jobmaster(args: argparse.Namespace) -> int:
    """Runs the JobMaster; when the job fails, says why (and whether a restart could mend it) to Kubernetes.

    The reason goes to the container's termination message file (``protocol/termination.py``), so that
    the operator shows it in ``status.error`` and fails the StreamJob on a final failure instead of
    restarting it; the same text ends the log (``FallbackToLogsOnError`` when the file is unwritable).
    """
    from streamjob.worker.failures import final_at_start

    ended: list[tuple[str | None, bool]] = []
    try:
        code = _run_jobmaster(args, ended)
    except StreamJobError as err:
        _say_why(str(err), final=final_at_start(err), logged=True)  # ``main`` logs it: "error: ..."
        raise
    if code != 0:
        reason, final = ended[0] if ended else (None, False)
        _say_why(reason or f"the JobMaster ended with exit code {code}", final=final)
    return code


def _say_why(reason: str, *, final: bool, logged: bool = False) -> None:
    """Writes the termination message (ignored where the file cannot be written) and logs it last.

    ``logged``: the reason follows in the log anyway; only the marker line is printed before it.
    """
    from streamjob.worker.protocol.termination import DEFAULT_PATH, FINAL_MARKER, PATH_ENV, format_message

    text = format_message(reason, final=final)
    chosen = os.environ.get(PATH_ENV)
    path = Path(chosen or DEFAULT_PATH)
    try:
        if chosen or path.is_file():  # the container runtime creates the file; never create it in a host's /dev
            path.write_text(text)
    except OSError:
        pass  # read-only or not there: the log below still says it
    if final:
        print(FINAL_MARKER if logged else text.rstrip("\n"), file=sys.stderr, flush=True)


def _run_jobmaster(args: argparse.Namespace, ended: list[tuple[str | None, bool]]) -> int:
    """``streamjob jobmaster``; ``ended`` gets the failure's reason and finality when the job fails."""
    started = time.monotonic()
    import asyncio

    from streamjob.worker.config import load_job_config
    from streamjob.worker.jobmaster.control import ControlServer
    from streamjob.worker.jobmaster.jobmaster import JobMaster
    from streamjob.worker.jobmaster.plan import resolve_plan
    from streamjob.worker.jobmaster.rest import serve
    from streamjob.worker.loader import load_job
    from streamjob.worker.protocol.auth import derive_rest_token
    from streamjob.worker.protocol.tls import check_internal_pair, internal_server_context, rest_server_context

    secret = require_job_secret()
    rest_token = derive_rest_token(secret)
    config = load_job_config(args.config)
    updates: dict[str, Any] = {}
    if args.restore_from:
        updates["restore_from"] = args.restore_from
    if args.rest_port is not None:
        updates["rest_port"] = args.rest_port
    if args.control_port is not None:
        updates["control_port"] = args.control_port
    if updates:
        config = config.model_copy(update=updates)
    loaded = load_job(config.entrypoint, config.args)
    if not config.checkpoints_uri and not loaded.env.checkpoint_config.storage:
        raise ConfigError("no checkpoints URI: set checkpoints_uri in job.json (spec.storage.checkpointsUri)")
    plan = resolve_plan(config, loaded, default_checkpoints_uri=config.checkpoints_uri or "")
    if config.internal_tls:
        check_internal_pair(config.internal_tls)  # the worker pods mount the same files
    internal_tls = internal_server_context(config.internal_tls) if config.internal_tls else None
    rest_tls = rest_server_context(config.rest_tls) if config.rest_tls else None

    def log_event(kind: str, data: dict[str, Any]) -> None:
        logging.getLogger("streamjob.jobmaster").info("event %s %s", kind, json.dumps(data, default=str))

    async def main() -> int:
        jm = JobMaster(
            plan, events=log_event, hold_deploy_until=started + args.hold_deploy if args.hold_deploy > 0 else None
        )
        host = config.rest_host
        if host == "0.0.0.0" and os.environ.get("POD_IP"):
            host = os.environ["POD_IP"]  # pods may share a network (the test bed): bind the pod's own address
        control = ControlServer(jm, secret, tls=internal_tls)
        control_port = await control.start(host, config.control_port)
        jm.jobmaster_address = f"{host}:{control_port}"
        runner, port = await serve(jm, host, config.rest_port, rest_token=rest_token, tls=rest_tls)
        logging.getLogger("streamjob.jobmaster").info(
            "serving the REST API on %s:%d and the slots' control port on %s:%d", host, port, host, control_port
        )
        try:
            code = await jm.run()
            ended.append((jm.failure, jm.final))
            return code
        finally:
            await asyncio.sleep(0.5)
            await runner.cleanup()
            await control.close()

    gc_pause.resume()
    return asyncio.run(main())


def _cmd_worker(args: argparse.Namespace) -> int:
    import signal
    import subprocess

    if args.slots < 1:
        raise ConfigError(f"--slots must be >= 1, got {args.slots}")
    secret = require_job_secret()  # the slot processes inherit it with the environment
    if args.slots == 1:
        from streamjob.worker.slot_process import run_slot

        return run_slot(args.jobmaster, args.data_host, secret)
    from streamjob.worker.jobmaster.launcher import die_with_this_process

    # the slots die with this process, as with the pod it stands for (a SIGKILLed worker leaves none behind)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamjob.worker.cli",
                "slot",
                "--jobmaster",
                args.jobmaster,
                "--data-host",
                args.data_host,
            ],
            preexec_fn=die_with_this_process(),
        )
        for _ in range(args.slots)
    ]

    def forward(signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    gc_pause.resume()
    code = 0
    while procs:
        for proc in list(procs):
            rc = proc.poll()
            if rc is None:
                continue
            procs.remove(proc)
            if rc != 0:
                code = rc
                forward(signal.SIGKILL, None)
        time.sleep(0.2)
    return code


def _cmd_savepoint(args: argparse.Namespace) -> int:
    from streamjob.worker.cli_tls import rest_client_tls
    from streamjob.worker.protocol.rest import SavepointStatus
    from streamjob.worker.rest_client import client_for

    client = client_for(args.jobmaster, token_file=args.token_file, tls=rest_client_tls(args))
    started = client.trigger_savepoint(args.target, stop=args.stop)
    request_id = started.request_id
    print(
        f"savepoint {request_id} in progress ({'stopping the job afterwards; ' if args.stop else ''}"
        f"directory {started.directory})...",
        file=sys.stderr,
    )
    deadline = time.monotonic() + args.timeout / 1000
    while time.monotonic() < deadline:
        try:
            status = client.savepoint(request_id)
        except StreamJobError:
            if args.stop and started.directory and _savepoint_complete(started.directory):
                print(started.directory)
                return 0
            raise
        if status.status is SavepointStatus.COMPLETED:
            print(status.location)
            return 0
        if status.status is SavepointStatus.FAILED:
            raise StreamJobError(f"savepoint {request_id} failed: {status.reason}")
        time.sleep(0.2)
    raise StreamJobError(
        f"savepoint {request_id} did not complete within {args.timeout / 1000:g} s; raise --timeout, "
        "or see the job's log for the checkpoint's progress"
    )


def _savepoint_complete(directory: str) -> bool:
    """Whether a savepoint's ``_metadata`` exists (the job may have stopped and taken its API along)."""
    from streamjob.worker.storage.stores import open_store

    try:
        return open_store(directory).exists("_metadata")
    except StreamJobError:
        return False


def _cmd_checkpoints(args: argparse.Namespace) -> int:
    from streamjob.worker.cli_values import storage_uri
    from streamjob.worker.storage.discovery import list_snapshots, render_snapshot_table

    rows = list_snapshots(storage_uri(args.uri))
    if args.json:
        print(json.dumps([r.__dict__ for r in rows], default=str, indent=2))
        return 0
    if not rows:
        print(f"no completed checkpoints or savepoints under {args.uri}")
        return 0
    print(render_snapshot_table(rows))
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    from streamjob.worker.cli_tls import rest_client_tls
    from streamjob.worker.rest_client import client_for

    client_for(args.jobmaster, token_file=args.token_file, tls=rest_client_tls(args)).cancel()
    print("cancelling", file=sys.stderr)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from streamjob.worker.cli_values import storage_uri
    from streamjob.worker.demo import run_demo

    return run_demo(storage_uri(args.checkpoint_dir) if args.checkpoint_dir else None)


_COMMANDS = {
    "run": _cmd_run,
    "jobmaster": _cmd_jobmaster,
    "worker": _cmd_worker,
    "savepoint": _cmd_savepoint,
    "checkpoints": _cmd_checkpoints,
    "cancel": _cmd_cancel,
    "demo": _cmd_demo,
}


def main(argv: list[str] | None = None) -> int:
    """Console entry point.

    The garbage collector is off while the command imports its modules and starts (``gc_pause``):
    the long-running commands turn it back on once they are up, and at the latest it is on again
    when this returns.
    """
    gc_pause.pause()
    try:
        return _main(argv)
    finally:
        gc_pause.end()


def _main(argv: list[str] | None) -> int:
    from streamjob.worker.cli_parser import parse_args

    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    level = args.log_level or ("INFO" if args.command in ("jobmaster", "worker", "slot") else "WARNING")
    logging.basicConfig(
        level=getattr(logging, str(level).upper(), logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "slot":
        from streamjob.worker.cli_values import read_jobmaster_address
        from streamjob.worker.slot_process import run_slot

        try:
            secret = require_job_secret()
            jobmaster = read_jobmaster_address(sys.stdin.buffer) if args.jobmaster == "-" else args.jobmaster
            return run_slot(jobmaster, args.data_host, secret)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            return err.exit_code
    try:
        return _COMMANDS[args.command](args)
    except StreamJobError as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
