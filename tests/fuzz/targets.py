"""Fuzz targets: one ``target(data: bytes) -> None`` per decoder that reads bytes from a socket or storage.

A target feeds the bytes to one decoder and lets only that decoder's documented errors through
silently; anything else (another exception type, a hang, memory beyond the limit, an audit event
showing that code ran) is a finding. ``TARGETS`` is the one registry: ``tests/fuzz/run.py`` fuzzes
and replays its entries and ``tests/fuzz/test_fuzz.py`` runs them under pytest. To add a decoder
(e.g. the protocol decoders of ``streamjob.worker.protocol``), write a target and add one ``Target``
line to ``TARGETS``; its seeds go under ``tests/fuzz/corpus/<name>/`` (``tests/fuzz/seeds.py``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamjob.worker.errors import MetadataError, SerializationError
from streamjob.worker.loader import LoadedJob, job_record_classes
from streamjob.worker.protocol.framing import FrameKind, parse_credit, read_frame
from streamjob.worker.protocol.messages import (
    CHALLENGE,
    HELLO,
    TO_JOBMASTER,
    TO_SLOT,
    WELCOME,
    ProtocolError,
    decode,
    decode_event,
)
from streamjob.worker.runtime.codec import RecordCodec
from streamjob.worker.snapshot.metadata import decode_lineage, decode_metadata
from tests.support import codec_job

# Not watched: ``object.__setattr__`` (a forged BUILD on an allowed class sets its attributes; the
# codec refuses such a batch and undoes the change, which ``test_codec_attacks`` checks).


class CodeRan(BaseException):
    """An audit event showed that decoding imported, executed or spawned something: never allowed.

    A BaseException, so that no ``except Exception`` of the code under test can swallow it.
    """


_FORBIDDEN_EVENTS = frozenset(
    {
        "exec",
        "compile",
        "import",
        "pickle.find_class",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "subprocess.Popen",
        "ctypes.dlopen",
        "ctypes.dlsym",
        "builtins.input",
        "code.__new__",
        "function.__new__",
        "os.remove",
        "os.rename",
        "shutil.rmtree",
        "socket.connect",
        "urllib.Request",
    }
)
_watching = [False]


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _watching[0]:
        return
    if event in _FORBIDDEN_EVENTS or (
        event == "open" and len(args) > 1 and isinstance(args[1], str) and any(c in args[1] for c in "wax+")
    ):
        _watching[0] = False
        raise CodeRan(f"decoding raised the audit event {event} {str(args)[:200]}")


_unraisable: list[str] = []


def _record_unraisable(hook: Any) -> None:
    _unraisable.append(f"{hook.exc_type.__name__}: {hook.exc_value} (in {hook.object!r})"[:300])


def install_audit_hook() -> None:
    """Watches every target call for audit events that mean code ran (once per process: hooks stay).

    Errors CPython cannot raise (in a destructor: "deallocated bytearray object has exported
    buffers") are recorded too: a target call that caused one fails.
    """
    sys.addaudithook(_audit)
    sys.unraisablehook = _record_unraisable


def watched(fn: Callable[[bytes], None]) -> Callable[[bytes], None]:
    """``fn`` with the audit watch switched on while it runs."""

    def run(data: bytes) -> None:
        _watching[0] = True
        _unraisable.clear()
        sys.last_value = None  # PyErr_Print (a SystemError in a destructor) sets it
        try:
            fn(data)
        finally:
            _watching[0] = False
        printed = getattr(sys, "last_value", None)
        if _unraisable or printed is not None:
            problem = _unraisable[0] if _unraisable else f"{type(printed).__name__}: {printed}"
            raise AssertionError(f"decoding caused an error CPython could not raise: {problem}")

    run.__name__ = fn.__name__
    return run


_CODEC = RecordCodec(job_record_classes(LoadedJob(codec_job.build(), "fuzz", codec_job.__name__)))


def record_codec(data: bytes) -> None:
    """``RecordCodec.decode``: a DATA frame's payload, with the stand-in job's classes allowed."""
    try:
        records = _CODEC.decode(data)
    except SerializationError:
        return
    assert type(records) is list


def metadata(data: bytes) -> None:
    """``decode_metadata`` and ``decode_lineage``: files read from checkpoint storage."""
    for decode_file in (decode_metadata, decode_lineage):
        try:
            decode_file(data, source="fuzz://chk-1/_metadata")
        except MetadataError:
            pass


_LOOP = asyncio.new_event_loop()


_MAX_PAYLOAD = 1024 * 1024
"""The fuzzer's frame limit (the data plane's is 64 MiB): the check before the read is the same."""


async def _frames(data: bytes) -> None:
    reader = asyncio.StreamReader(limit=2**16)
    reader.feed_data(data)
    reader.feed_eof()
    first = True
    while True:
        kind, _, payload = await read_frame(reader, _MAX_PAYLOAD)
        if first and kind == FrameKind.MESSAGE:
            decode(payload, HELLO)
        elif kind == FrameKind.DATA:
            _CODEC.decode(payload)
        elif kind == FrameKind.EVENT:
            decode_event(payload)
        elif kind == FrameKind.CREDIT:
            parse_credit(payload)
        first = False


def data_frames(data: bytes) -> None:
    """``protocol.framing.read_frame`` over a byte stream, each frame decoded as a data server does."""
    try:
        _LOOP.run_until_complete(_frames(data))
    except (asyncio.IncompleteReadError, SerializationError, ProtocolError):  # FrameError is a ProtocolError
        return


def control_message(data: bytes) -> None:
    """``protocol.messages.decode``: a control or handshake message, under every schema a peer meets."""
    for schema in (TO_JOBMASTER, TO_SLOT, CHALLENGE, HELLO, WELCOME):
        try:
            decode(data, schema)  # type: ignore[arg-type]
        except ProtocolError:
            pass


@dataclass(frozen=True)
class Target:
    """A decoder under fuzzing."""

    name: str
    run: Callable[[bytes], None]


TARGETS: list[Target] = [
    Target("record_codec", record_codec),
    Target("metadata", metadata),
    Target("data_frames", data_frames),
    Target("control_message", control_message),
]
"""Every fuzz target; add new decoders here (the corpus directory is ``corpus/<name>``)."""


def by_name(name: str) -> Target:
    """The registered target called ``name``, or ``module:function`` for a target defined elsewhere."""
    for target in TARGETS:
        if target.name == name:
            return target
    if ":" in name:
        import importlib

        module, function = name.split(":", 1)
        return Target(name.replace(":", "."), getattr(importlib.import_module(module), function))
    raise SystemExit(f"unknown fuzz target {name!r}; registered: {', '.join(t.name for t in TARGETS)}")
