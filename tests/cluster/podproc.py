"""Starting a container's command as a local process, the node agent's stand-in for a container runtime.

The process runs in a private mount namespace (``unshare --mount``) where a small shell prologue
bind-mounts the pod's volumes (ConfigMap, Secret, projected, downwardAPI, emptyDir, hostPath and a
per-claim directory for persistentVolumeClaim) at their ``mountPath``s and the container's
termination-message file at ``terminationMessagePath``, then ``exec``s the command: the process ID the
agent holds is the container's main process, and its process group is the container. Mount points
that do not exist on the host are created as empty directories/files (the mounts themselves are
invisible outside the namespace). Without root, volumes cannot be mounted and are skipped.

Callers: ``tests/cluster/node_agent.py``.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.cluster.podspec import VolumeFile

Json = dict[str, Any]


_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """``preexec_fn``: the child gets ``sig`` when the thread that started it ends (Linux prctl).

    Keeps pod processes and the control plane from outliving a pytest run that was killed.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def can_mount() -> bool:
    """True when private mount namespaces are available (root and ``unshare``)."""
    return os.geteuid() == 0 and shutil.which("unshare") is not None


def write_volume(root: Path, files: list[VolumeFile]) -> None:
    """Writes a ConfigMap/Secret/projected volume's files under ``root`` (recreated from scratch)."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for item in files:
        target = root / item.path
        if not target.resolve().is_relative_to(root.resolve()):
            raise ValueError(f"volume item path {item.path!r} escapes the volume")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(item.content)
        target.chmod(item.mode & 0o777)


def hides_shared(mount_path: str, shared: tuple[Path, ...]) -> bool:
    """Whether a volume mounted at ``mount_path`` would cover one of the host's ``shared`` directories.

    On the bed the host's temporary directory is the storage tests and pods share (``file://``
    checkpoints, job output, the agent's own volume files): an emptyDir over ``/tmp`` (the job pods'
    scratch space under a read-only root filesystem) would hide it, so the agent leaves such a
    mount out and the pod uses the host's directory.
    """
    target = Path(os.path.normpath(mount_path))
    return any(directory == target or target in directory.parents for directory in shared)


def volume_source(pod_dir: Path, pvc_dir: Path, namespace: str, volume: Json) -> Path:
    """The host directory that backs a volume (created if needed)."""
    name = str(volume["name"])
    if "hostPath" in volume:
        path = Path(str(volume["hostPath"]["path"]))
        if volume["hostPath"].get("type", "") in ("DirectoryOrCreate", ""):
            path.mkdir(parents=True, exist_ok=True)
        return path
    if "persistentVolumeClaim" in volume:
        path = pvc_dir / namespace / str(volume["persistentVolumeClaim"]["claimName"])
        path.mkdir(parents=True, exist_ok=True)
        return path
    path = pod_dir / "volumes" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class Launch:
    """Everything needed to start one container process."""

    argv: list[str]
    env: dict[str, str]
    working_dir: str
    mounts: list[tuple[Path, str, bool]]  # (host source, mountPath, read-only)
    termination_file: Path | None
    termination_path: str
    log_path: Path


def _bind(source: Path, target: str, read_only: bool) -> list[str]:
    """Shell commands that bind-mount ``source`` at ``target``, creating the mount point if missing."""
    src, dst = shlex.quote(str(source)), shlex.quote(target)
    make_file = [f'mkdir -p "$(dirname {dst})"', f"[ -e {dst} ] || : > {dst}"]
    lines = [f"mkdir -p {dst}"] if source.is_dir() else make_file
    lines.append(f"mount --bind {src} {dst}")
    if read_only:
        lines.append(f"mount -o remount,bind,ro {dst}")
    return lines


def _prologue(launch: Launch) -> str:
    """The shell run inside the new mount namespace before ``exec``ing the container's command."""
    lines = ["set -e"]
    for source, target, read_only in launch.mounts:
        lines += _bind(source, target, read_only)  # each line fatal under set -e
    if launch.termination_file is not None:
        # Best effort: a host whose /dev is read-only still runs the pod, without a termination message.
        chain = " && ".join(f"{{ {line}; }}" for line in _bind(launch.termination_file, launch.termination_path, False))
        lines.append(f"{{ {chain}; }} 2>/dev/null || true")
    if launch.working_dir:
        wd = shlex.quote(launch.working_dir)
        lines.append(f"mkdir -p {wd}; cd {wd}")
    lines.append('exec "$@"')
    return "\n".join(lines)


def spawn(launch: Launch) -> subprocess.Popen[bytes]:
    """Starts the container's process in its own session; stdout and stderr go to its log file."""
    launch.log_path.parent.mkdir(parents=True, exist_ok=True)
    with launch.log_path.open("ab") as log:
        if can_mount():
            args = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                _prologue(launch),
                "container",
                *launch.argv,
            ]
            cwd = None
        else:
            args = list(launch.argv)
            cwd = launch.working_dir or None
        return subprocess.Popen(
            args,
            env=launch.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )


def find_executable(name: str, path: str) -> str | None:
    """Where the container's command resolves on the pod's PATH, or None (the runtime's exec error)."""
    if "/" in name:
        return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    return shutil.which(name, path=path)
