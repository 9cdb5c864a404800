"""The JobMaster's termination message: why the job failed, and whether a restart could mend it.

On Kubernetes the JobMaster writes it to its container's termination message file when the job
fails (``streamjob jobmaster`` in ``cli.py``); the operator reads it from the pod's
``state.terminated.message`` (``operator/observer/pods.py``). A failure no restart can mend
(``failures.py``, or a bad config or job module at start-up) begins with ``FINAL_MARKER`` on a
line of its own; then the operator fails the StreamJob instead of restarting it. Exit codes alone
cannot say this: exit 3 is both a corrupt restore point (final) and unreachable storage (not).

Pure formatting and parsing; the kubelet keeps at most ``MAX_BYTES`` of the file.
"""

from __future__ import annotations

#: The first line of a final failure's termination message.
FINAL_MARKER = "streamjob: final failure — a restart cannot mend it"

#: The most of the file Kubernetes keeps (bytes).
MAX_BYTES = 4096

#: Where the container's termination message goes (Kubernetes' default ``terminationMessagePath``).
DEFAULT_PATH = "/dev/termination-log"

#: Overrides ``DEFAULT_PATH`` (tests).
PATH_ENV = "STREAMJOB_TERMINATION_LOG"


def format_message(reason: str, *, final: bool) -> str:
    """The file's text: ``reason`` (after the marker line when ``final``), cut to ``MAX_BYTES``."""
    text = f"{FINAL_MARKER}\n{reason.strip()}\n" if final else f"{reason.strip()}\n"
    raw = text.encode()
    if len(raw) <= MAX_BYTES:
        return text
    return raw[: MAX_BYTES - 4].decode(errors="ignore") + "...\n"


def parse_message(message: str) -> tuple[bool, str]:
    """``(final, reason)`` of a terminated container's message.

    The marker may follow other lines: with ``FallbackToLogsOnError`` and no file written, the
    message is the log's tail, where the JobMaster printed the same text last. Without the
    marker, the reason is the message's last non-empty lines (a log tail ends with the error).
    """
    lines = [line.strip() for line in message.splitlines()]
    marks = [i for i, line in enumerate(lines) if line == FINAL_MARKER]
    if marks:
        rest = [line for line in lines[marks[-1] + 1 :] if line]
        return True, " ".join(rest) or "the JobMaster gave no reason"
    tail = [line for line in lines if line][-3:]
    return False, " | ".join(tail)
