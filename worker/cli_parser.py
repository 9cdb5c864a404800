"""The ``streamjob`` command line: its options (``parser``) and their parsing (``parse_args``).

Every subcommand's flags, help and defaults live here; the values are checked by ``cli_values``
(one-line errors naming the flag) and the TLS flags come from ``cli_tls``. ``run``'s job arguments
may follow ENTRYPOINT, its options, or ``--``. Called by ``cli.main`` and the tests of the flags.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from streamjob.worker.cli_tls import add_client_tls_flags, add_run_tls_flags
from streamjob.worker.cli_values import (
    checked,
    checkpoint_keys,
    count_between,
    debloat_keys,
    host_port,
    parse_define,
    parse_duration_ms,
    parse_interval_ms,
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

_TOKEN_HELP = (
    "file holding the job's REST token (default: $STREAMJOB_REST_TOKEN, $STREAMJOB_REST_TOKEN_FILE, "
    "else the token file of the local `streamjob run` at that address)"
)


def parser() -> argparse.ArgumentParser:
    """Every subcommand with its flags; each subparser remembers itself so that later errors show its usage."""
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
        "--standby-slots",
        type=checked(count_between(0, 100)),
        default=0,
        metavar="N",
        help="slot processes kept idle beside the job's: a failed slot's tasks are redeployed onto one at once "
        "(default 0)",
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


_NEGATIVE = re.compile(r"^-\d+$|^-\d*\.\d+$")  # a job argument such as -5, not an option


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parses argv; ``run``'s job arguments may follow ENTRYPOINT, its options, or ``--``."""
    head, job_args = split_job_args(argv)
    args, extra = parser().parse_known_args(head)
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
