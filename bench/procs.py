"""Process facts from /proc: the slot processes of a local run and their memory.

Used by ``harness`` to find the children of a ``streamjob run`` process (the slots) and to
sample their resident memory while the job runs. Linux only; elsewhere every reading is empty.
"""

from __future__ import annotations

from pathlib import Path

_PROC = Path("/proc")


def children(pid: int) -> list[int]:
    """Direct child process ids of ``pid`` (all its threads' children)."""
    found: list[int] = []
    try:
        tasks = list((_PROC / str(pid) / "task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            text = (task / "children").read_text()
        except OSError:
            continue
        found.extend(int(p) for p in text.split())
    return sorted(set(found))


def status_kb(pid: int, *fields: str) -> dict[str, int]:
    """The named ``kB`` fields of /proc/<pid>/status (e.g. VmRSS, VmHWM); missing ones are left out."""
    out: dict[str, int] = {}
    try:
        text = (_PROC / str(pid) / "status").read_text()
    except OSError:
        return out
    wanted = set(fields)
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in wanted:
            out[name] = int(rest.split()[0])
    return out


def cmdline(pid: int) -> list[str]:
    """The argv of ``pid`` (empty once it is gone)."""
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def set_autogroup_nice(pid: int, nice: int) -> bool:
    """Sets the nice value of ``pid``'s scheduler autogroup (its session); False if not possible.

    Linux's CFS shares the CPUs fairly between autogroups (sessions) first: the job launched in its
    own session gets one session's share however many slot processes it runs. A negative value
    gives the job's session more weight — it takes CPU from the machine's other sessions.
    """
    try:
        (_PROC / str(pid) / "autogroup").write_text(str(nice))
    except OSError:
        return False
    return True


def load_average() -> float:
    """The 1-minute load average (a noise indicator on a shared machine); -1 where unknown."""
    try:
        return float((_PROC / "loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return -1.0
