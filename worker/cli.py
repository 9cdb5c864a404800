"""The ``streamjob`` command: run a job locally, run the JobMaster or a worker, take savepoints, list snapshots.

Every error streamjob raises on purpose prints one line (``error: ...``) and exits non-zero;
tracebacks are for bugs only (``--debug`` shows them for everything).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from streamjob.worker.cli_tls import add_client_tls_flags, add_run_tls_flags, rest_client_tls, run_tls_config
from streamjob.worker.cli_values import (
    DEBLOAT_PREFIX,
    checked,
    checkpoint_keys,
    count_between,
    debloat_keys,
    host_port,
    parse_define,
    parse_duration_ms,
    parse_interval_ms,
    read_jobmaster_address,
    rest_url,
    seconds_up_to,
    slot_jobmaster,
    split_job_args,
    storage_uri,
)
from streamjob.worker.config import (
    MAX_PARALLELISM,
    CheckpointingMode,
)
from streamjob.worker.errors import ConfigError, StreamJobError
from streamjob.worker.protocol.auth import require_job_secret

_TOKEN_HELP = (
    "file holding the job's REST token (default: $STREAMJOB_REST_TOKEN, $STREAMJOB_REST_TOKEN_FILE, "
    "else the token file of the local `streamjob run` at that address)"
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamjob",
        description="Checkpointed streaming jobs in Python. Start with `streamjob demo`, then "
        "`streamjob run examples/balance.py --checkpoint-interval 1s`.",
    )
    p.add_argument(
        "--log-level",
        default=os.environ.get("STREAMJOB_LOG_LEVEL"),
        help="logging level (DEBUG, INFO, WARNING; default INFO for jobmaster/worker, else WARNING)",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks for every error")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    keys = checkpoint_keys()

    run = sub.add_parser(
        "run",
        help="run a job on this machine (JobMaster + worker processes)",
        usage="%(prog)s [options] ENTRYPOINT [JOB_ARG ...]\n       %(prog)s ENTRYPOINT [options] -- [JOB_ARG ...]",
        description="Runs ENTRYPOINT (a job file such as jobs/my_job.py, or package.module:function) "
        "on this machine, one worker process per slot, with checkpoints on local disk "
        "or S3. Progress is printed as the job runs. Ctrl-C cancels it: its checkpoints "
        "are kept, so `--restore latest` continues where it stopped, unless the job's "
        "externalized cleanup is DELETE_ON_CANCELLATION (in the code, or -D "
        "checkpoint.externalized_cleanup=DELETE_ON_CANCELLATION), which deletes them. "
        "Savepoints are never deleted.",
    )
    run.add_argument(
        "entrypoint",
        nargs="?",
        metavar="ENTRYPOINT",
        help="job file (path/job.py[:function]) or package.module:function",
    )
    run.add_argument(
        "args",
        nargs="*",
        metavar="JOB_ARG",
        help="arguments passed to the job's function: after ENTRYPOINT, or anything after -- "
        "(also arguments that start with -)",
    )
    run.add_argument("--name", help="job name (default: from env.execute(name) or the file name)")
    run.add_argument(
        "--parallelism",
        "-p",
        type=checked(count_between(1, MAX_PARALLELISM)),
        help="default parallelism of every operator",
    )
    run.add_argument(
        "--max-parallelism", type=checked(count_between(1, MAX_PARALLELISM)), help="number of key groups (default 128)"
    )
    run.add_argument(
        "--checkpoint-dir",
        help="checkpoint storage: a directory, file:///path or s3://bucket/prefix "
        f"(default: the job's setting, else {Path('/tmp/streamjob')})",
    )
    run.add_argument("--savepoint-dir", help="where savepoints go (default: <checkpoint-dir>-savepoints)")
    run.add_argument(
        "--checkpoint-interval",
        type=checked(parse_interval_ms),
        metavar="DURATION",
        help="checkpoint every DURATION (e.g. 1s, 500ms; at least 10ms); overrides the job's value",
    )
    run.add_argument("--mode", choices=[m.value for m in CheckpointingMode], help="checkpointing mode override")
    run.add_argument("--state-backend", choices=["hashmap", "rocksdb"], help="state backend override")
    run.add_argument(
        "--restore", help="'latest' (continue the newest checkpoint of this job) or a checkpoint or savepoint URI"
    )
    run.add_argument(
        "--allow-non-restored-state",
        action="store_true",
        help="drop state of operators that are no longer in the job instead of failing",
    )
    run.add_argument(
        "-D",
        dest="defines",
        action="append",
        default=[],
        metavar="checkpoint.KEY=VALUE",
        type=checked(parse_define),
        help="a checkpoint setting, as in job.json's checkpoint section (repeatable); DURATION is "
        "e.g. 200ms, 5s or milliseconds. KEYs: "
        + ", ".join(f"{k}={v}" for k, v in keys.items())
        + "; also buffer_debloat.KEY=VALUE (buffer debloating), KEYs: "
        + ", ".join(f"{k}={v}" for k, v in debloat_keys().items()),
    )
    run.add_argument(
        "--rest-port",
        type=checked(count_between(0, 65535)),
        default=8081,
        help="REST API port (0 = any free port; default 8081)",
    )
    run.add_argument(
        "--rest-token-file",
        type=Path,
        metavar="PATH",
        help="write the REST token (needed to cancel or take savepoints) to PATH, mode 0600 (default: "
        "streamjob-<job>-<port>.token under $XDG_RUNTIME_DIR or the temp directory, removed "
        "when the run ends)",
    )
    run.add_argument(
        "--allow-savepoint-root",
        dest="allowed_savepoint_roots",
        action="append",
        default=[],
        metavar="URI",
        type=checked(storage_uri),
        help="also accept savepoint targets under URI (repeatable; by default only the job's savepoint directory)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    add_run_tls_flags(run)

    jm = sub.add_parser(
        "jobmaster",
        help="run the JobMaster (Kubernetes mode)",
        description="Runs the JobMaster of the job described by a job.json (rendered by the "
        "operator into the job's ConfigMap). Workers connect with `streamjob worker`.",
    )
    jm.add_argument("--config", required=True, type=Path, help="path of job.json")
    jm.add_argument("--restore-from", help="'latest' or a snapshot URI (overrides the config)")
    jm.add_argument("--rest-port", type=checked(count_between(0, 65535)), help="REST port (overrides the config)")
    jm.add_argument(
        "--control-port",
        type=checked(count_between(0, 65535)),
        help="the slots' control port (overrides the config; default 6123, 0 = any free port)",
    )
    jm.add_argument(
        "--hold-deploy",
        type=checked(seconds_up_to(3600)),
        default=0.0,
        metavar="SECONDS",
        help="deploy no task sooner than SECONDS after this process started (the operator passes "
        "what is left of a restart backoff, so that the processes start while it runs out)",
    )

    w = sub.add_parser(
        "worker",
        help="run a worker with N slots (Kubernetes mode)",
        description="Starts N slot processes (one CPU each) that register with the JobMaster.",
    )
    w.add_argument(
        "--jobmaster",
        required=True,
        type=checked(host_port),
        help="HOST:PORT of the JobMaster's control port (6123 unless the job config sets control_port)",
    )
    w.add_argument("--slots", type=checked(count_between(1, 1024)), default=1, help="number of task slots (processes)")
    w.add_argument(
        "--data-host",
        default=os.environ.get("POD_IP", "0.0.0.0"),
        help="address to accept data connections on (default: $POD_IP)",
    )

    slot = sub.add_parser("slot")  # internal (started by `worker` and local mode): no help= keeps it unlisted
    slot.add_argument("--jobmaster", required=True, type=checked(slot_jobmaster))
    slot.add_argument("--data-host", default="127.0.0.1")

    sp = sub.add_parser(
        "savepoint",
        help="take a savepoint of a running job",
        description="Asks a running job's JobMaster for a savepoint and waits for it.",
    )
    sp.add_argument(
        "--jobmaster",
        default="http://127.0.0.1:8081",
        type=checked(rest_url),
        help="the JobMaster's REST address: HOST:PORT or an http(s) URL (default http://127.0.0.1:8081)",
    )
    sp.add_argument(
        "--target", type=checked(storage_uri), help="savepoint directory URI (default: the job's savepoints URI)"
    )
    sp.add_argument("--stop", action="store_true", help="stop the job after the savepoint (stop-with-savepoint)")
    sp.add_argument(
        "--timeout",
        default="10m",
        type=checked(parse_duration_ms),
        metavar="DURATION",
        help="how long to wait (default 10m)",
    )
    sp.add_argument("--token-file", type=Path, metavar="FILE", help=_TOKEN_HELP)
    add_client_tls_flags(sp)

    cp = sub.add_parser(
        "checkpoints",
        help="list completed checkpoints and savepoints in storage",
        description="Lists the completed checkpoints and savepoints under URI (a checkpoints or "
        "savepoints root, a job's directory, or one snapshot), newest first.",
    )
    cp.add_argument("uri", help="file:///path, s3://bucket/prefix or a directory")
    cp.add_argument("--json", action="store_true", help="print JSON")

    cancel = sub.add_parser("cancel", help="cancel a running job")
    cancel.add_argument(
        "--jobmaster",
        default="http://127.0.0.1:8081",
        type=checked(rest_url),
        help="the JobMaster's REST address: HOST:PORT or an http(s) URL (default http://127.0.0.1:8081)",
    )
    cancel.add_argument("--token-file", type=Path, metavar="FILE", help=_TOKEN_HELP)
    add_client_tls_flags(cancel)

    demo = sub.add_parser("demo", help="run the sample job: checkpoints, a killed worker, recovery, exact results")
    demo.add_argument("--checkpoint-dir", help="where the demo's checkpoints go (default: a temporary directory)")
    for command in sub.choices.values():
        command.set_defaults(command_parser=command)  # its usage goes with errors found after parsing
    return p


def _cmd_run(args: argparse.Namespace) -> int:
    from streamjob.worker.config import JobConfig, parse_job_config
    from streamjob.worker.local import Progress, local_launcher, run_local, slug

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
    launcher = local_launcher(provisional)
    launcher.prestart(args.parallelism or 1, attempt=provisional.attempt)
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

    return asyncio.run(main())


def _cmd_worker(args: argparse.Namespace) -> int:
    import signal
    import subprocess

    if args.slots < 1:
        raise ConfigError(f"--slots must be >= 1, got {args.slots}")
    secret = require_job_secret()  # the slot processes inherit it with the environment
    if args.slots == 1:
        from streamjob.worker.slot import run_slot

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
    from streamjob.worker.rest_client import client_for

    client_for(args.jobmaster, token_file=args.token_file, tls=rest_client_tls(args)).cancel()
    print("cancelling", file=sys.stderr)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
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


_NEGATIVE = re.compile(r"^-\d+$|^-\d*\.\d+$")  # a job argument such as -5, not an option


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parses argv; ``run``'s job arguments may follow ENTRYPOINT, its options, or ``--``."""
    head, job_args = split_job_args(argv)
    args, extra = _parser().parse_known_args(head)
    command: argparse.ArgumentParser = args.command_parser
    if args.command != "run":
        if extra:
            command.error(f"unrecognized arguments: {' '.join(extra)}")
        return args
    unknown = [a for a in extra if a.startswith("-") and not _NEGATIVE.match(a)]
    if unknown:
        command.error(f"unrecognized arguments: {' '.join(unknown)} (the job's own options go after --)")
    positionals = [*([args.entrypoint] if args.entrypoint else []), *args.args, *extra, *job_args]
    if not positionals:
        command.error("the following arguments are required: ENTRYPOINT")
    args.entrypoint, args.args = positionals[0], positionals[1:]
    return args


def main(argv: list[str] | None = None) -> int:
    """Console entry point."""
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    level = args.log_level or ("INFO" if args.command in ("jobmaster", "worker", "slot") else "WARNING")
    logging.basicConfig(
        level=getattr(logging, str(level).upper(), logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "slot":
        from streamjob.worker.slot import run_slot

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
