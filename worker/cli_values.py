"""The ``streamjob`` command's argument values: durations, counts, URIs, ``HOST:PORT``, ``-D`` settings.

Each converter turns one command-line string into a checked value or raises ``ConfigError`` with a one-line
message naming the value and the fix; ``split_job_args`` separates ``run``'s arguments from the job's.
Pure; used by ``cli.py`` (and its tests).
"""

from __future__ import annotations

import argparse
import difflib
import enum
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel

from streamjob.worker.config import MAX_DURATION_MS, MIN_INTERVAL_MS, BufferDebloat, CheckpointOverrides
from streamjob.worker.errors import ConfigError, StreamJobError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)?\s*$")


def parse_duration_ms(text: str) -> int:
    """``500ms``, ``1s``, ``2m``, ``1h`` or plain milliseconds, at most ``MAX_DURATION_MS``."""
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(f"'{text}' is not a duration; use e.g. 500ms, 1s, 2m or a number of milliseconds")
    value, unit = float(match.group(1)), match.group(2) or "ms"
    factor = {"ms": 1, "s": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000}[unit]
    ms = value * factor
    if not math.isfinite(ms) or ms > MAX_DURATION_MS:
        raise ConfigError(f"'{text}' is too long a duration; the longest is {MAX_DURATION_MS} ms (about 24 days)")
    return int(ms)


def parse_interval_ms(text: str) -> int:
    """``--checkpoint-interval``: a duration of at least ``MIN_INTERVAL_MS`` (0 would mean "off", not a flag value)."""
    ms = parse_duration_ms(text)
    if ms < MIN_INTERVAL_MS:
        raise ConfigError(
            f"'{text}' is shorter than the shortest checkpoint interval, {MIN_INTERVAL_MS}ms; to run without "
            "checkpoints leave the flag out and do not call env.enable_checkpointing()"
        )
    return ms


def count_between(low: int, high: int) -> Callable[[str], int]:
    """An integer flag within [low, high] (argparse names the flag in the error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"'{text}' is not a whole number") from None
        if not low <= value <= high:
            raise ConfigError(f"must be from {low} to {high}, got {value}")
        return value

    return parse


def seconds_up_to(high: float) -> Callable[[str], float]:
    """A number of seconds in [0, high]."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"'{text}' is not a number of seconds") from None
        if not math.isfinite(value) or not 0 <= value <= high:
            raise ConfigError(f"must be from 0 to {high:g} seconds, got {text}")
        return value

    return parse


def scalar(text: str) -> Any:
    """``true``/``false``/numbers as JSON, anything else as a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def storage_uri(text: str) -> str:
    from streamjob.worker.storage.uri import parse_storage_uri

    if "://" not in text:
        return Path(text).resolve().as_uri()
    return str(parse_storage_uri(text))


def checked(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type=``: every option is checked while parsing, before a command contacts anything."""

    def check(text: str) -> Any:
        try:
            return convert(text)
        except StreamJobError as err:
            raise argparse.ArgumentTypeError(str(err)) from err

    return check


_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)$")


def host_port(text: str) -> str:
    """``HOST:PORT`` of a JobMaster's control port (an ``http://HOST:PORT`` URL is accepted too)."""
    if text.startswith("http://") and urlsplit(text).path.strip("/") == "":
        text = urlsplit(text).netloc
    host, sep, port = text.rpartition(":")
    if not sep or not _HOST.match(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"'{text}' is not a JobMaster address; use HOST:PORT, e.g. 10.0.0.5:6123")
    return text


def slot_jobmaster(text: str) -> str:
    """A slot's ``--jobmaster``: ``HOST:PORT``, or ``-`` to read it from standard input (prestarted local slots)."""
    return text if text == "-" else host_port(text)


def read_jobmaster_address(stream: Any) -> str:
    """The control port's address a prestarted slot reads from its pipe (``LocalProcessLauncher.prestart``).

    One ``HOST:PORT`` line; end of input without one means the JobMaster is gone or stopped the slot.
    """
    line = stream.readline(256)
    text = line.decode("utf-8", "replace").strip() if isinstance(line, bytes) else str(line).strip()
    if not text:
        raise ConfigError("the JobMaster ended before it gave this slot its address (standard input closed)")
    return host_port(text)


def rest_url(text: str) -> str:
    """The JobMaster's REST base URL from ``HOST:PORT`` or an ``http(s)://`` URL."""
    url = text if "://" in text else f"http://{text}"
    parts = urlsplit(url)
    try:
        host = f"[{parts.hostname}]" if "[" in parts.netloc else parts.hostname or ""  # IPv6 needs its brackets
        valid = (
            parts.port != 0
            and parts.scheme in ("http", "https")
            and bool(_HOST.match(host))
            and not parts.netloc.endswith(":")
            and not parts.query
            and not parts.fragment
        )
    except ValueError:  # the port is not a number from 0 to 65535
        valid = False
    if not valid:
        raise ConfigError(
            f"'{text}' is not a JobMaster REST address; use HOST:PORT or an http(s) URL, e.g. "
            "127.0.0.1:8081 or http://my-job-rest:8081"
        )
    return url.rstrip("/")


DEBLOAT_PREFIX = "buffer_debloat."
"""``-D buffer_debloat.KEY=VALUE`` sets job.json's ``buffer_debloat`` section (``config.BufferDebloat``)."""


def value_form(name: str, model: type[BaseModel] = CheckpointOverrides) -> str:
    """How a ``-D checkpoint.<name>=VALUE`` (or another section's) is written, from the field's type."""
    annotation = model.model_fields[name].annotation
    kind = next((a for a in get_args(annotation) if a is not type(None)), annotation)
    if kind is bool:
        return "true|false"
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return "|".join(str(m.value) for m in kind)
    return "DURATION" if name.endswith("_ms") else "N"


def checkpoint_keys() -> dict[str, str]:
    """Every ``-D checkpoint.KEY`` (the fields of ``CheckpointOverrides``) and the form of its value."""
    return {name: value_form(name) for name in CheckpointOverrides.model_fields}


def debloat_keys() -> dict[str, str]:
    """Every ``-D buffer_debloat.KEY`` (the fields of ``BufferDebloat``) and the form of its value."""
    return {name: value_form(name, BufferDebloat) for name in BufferDebloat.model_fields}


def parse_define(text: str) -> tuple[str, Any]:
    """``checkpoint.KEY=VALUE`` → (KEY, value), ``buffer_debloat.KEY=VALUE`` → ("buffer_debloat.KEY", value).

    ``*_ms`` keys take durations (``5s``), others JSON scalars.
    """
    key, sep, value = text.partition("=")
    if sep and key.startswith(DEBLOAT_PREFIX):
        section, name, keys = "buffer_debloat", key.removeprefix(DEBLOAT_PREFIX), debloat_keys()
    elif sep and key.startswith("checkpoint."):
        section, name, keys = "checkpoint", key.removeprefix("checkpoint."), checkpoint_keys()
    else:
        raise ConfigError(
            f"'{text}' is not checkpoint.KEY=VALUE or buffer_debloat.KEY=VALUE (KEY as in job.json's section)"
        )
    if name not in keys:
        close = difflib.get_close_matches(name, keys, n=1, cutoff=0.5)
        hint = f"did you mean {section}.{close[0]}? " if close else ""
        raise ConfigError(f"unknown {section} setting '{name}'; {hint}valid keys: {', '.join(keys)}")
    parsed = parse_duration_ms(value) if keys[name] == "DURATION" else scalar(value)
    return (f"{DEBLOAT_PREFIX}{name}" if section == "buffer_debloat" else name), parsed


def split_job_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """``run``'s own arguments and the job's, split at the first ``--`` after ``run``.

    argparse cannot take ``--`` after the options that follow a positional (``run JOB -p 2 -- ARGS``),
    so everything after it is the job's; other commands keep their argv (and argparse's ``--``).
    """
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        option = argv[i]
        i += 2 if len(option) > 2 and "--log-level".startswith(option) else 1  # the one top-level option with a value
    if i >= len(argv) or argv[i] != "run" or "--" not in argv[i:]:
        return argv, []
    cut = argv.index("--", i)
    return argv[:cut], argv[cut + 1 :]
