"""Attacks on a running job's internal planes (real processes, local mode): the JobMaster's control port and
the slots' data ports. Strangers learn nothing but a nonce, cannot register or send records, cannot make a
process hold their bytes, cannot hold connections beyond the handshake limits, and never fail or restart the
job, which ends with exactly its output.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import msgpack
import pytest

from streamjob.worker.protocol.auth import new_job_secret
from streamjob.worker.protocol.handshake import CONTROL_LABEL, HandshakeError, connect
from streamjob.worker.protocol.messages import PROTOCOL_VERSION
from streamjob.worker.testing import LocalJob, read_committed, run_cli
from tests.integration.jobs import keyed_sum
from tests.integration.jobs.support import KEYED_SUM

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MIB = 1024 * 1024
HEADER = struct.Struct(">IBIII")  # the frame header, written out here as an attacker would
PENDING_LIMIT = 16
HANDSHAKE_S = 5.0


def rss_mib(pid: int) -> float:
    """The process's resident set (``VmRSS``)."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    assert match, text
    return int(match.group(1)) / 1024


def address(text: str | list[Any]) -> tuple[str, int]:
    if isinstance(text, list):
        return str(text[0]), int(text[1])
    host, _, port = text.rpartition(":")
    return host, int(port)


def read_challenge(sock: socket.socket) -> dict[str, Any]:
    """The one thing a stranger is told: a challenge frame with a fresh nonce."""
    head = b""
    while len(head) < HEADER.size:
        chunk = sock.recv(HEADER.size - len(head))
        assert chunk, "the server closed before its challenge"
        head += chunk
    length, kind, *_ = HEADER.unpack(head)
    assert kind == 0 and 13 < length < 1024, (length, kind)
    payload = b""
    while len(payload) < length - 13:
        payload += sock.recv(length - 13 - len(payload))
    challenge = msgpack.unpackb(payload)
    assert set(challenge) == {"t", "version", "nonce"} and challenge["t"] == "challenge", challenge
    assert len(challenge["nonce"]) == 32
    return challenge  # type: ignore[no-any-return]


def closed_with_nothing_said(sock: socket.socket, timeout: float = 15.0) -> bool:
    """Whether the server closes the connection within ``timeout`` without sending another byte."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(65536)
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    assert data == b"", f"the server said more to a stranger: {data[:80]!r}"
    return True


def stream(sock: socket.socket, first: bytes, total: int) -> int:
    """Sends ``first`` and then zeros up to ``total`` bytes; returns how many the server took before it closed."""
    sent = 0
    chunk = bytes(MIB)
    try:
        sock.sendall(first)
        sent = len(first)
        while sent < total:
            sock.sendall(chunk)
            sent += len(chunk)
    except (ConnectionResetError, BrokenPipeError):
        pass
    return sent


def frame(kind: int, payload: bytes) -> bytes:
    return HEADER.pack(len(payload) + 13, kind, 0, 0, 0) + payload


def hello(proof: bytes, attempt: int = 0) -> bytes:
    return frame(
        0,
        msgpack.packb(
            {
                "t": "hello",
                "version": PROTOCOL_VERSION,
                "nonce": os.urandom(32),
                "proof": proof,
                "attempt": attempt,
                "token": "guess",
            },
            use_bin_type=True,
        ),
    )


REGISTER = frame(0, msgpack.packb({"t": "register", "data_host": "127.0.0.1", "data_port": 9, "pid": 1}))


def attack(target: tuple[str, int], payload: bytes, *, then_stream: int = 0) -> int:
    """Connects as a stranger, takes the challenge, sends ``payload`` (and zeros); asserts it is dropped."""
    with socket.create_connection(target, timeout=10) as sock:
        read_challenge(sock)
        sent = stream(sock, payload, len(payload) + then_stream)
        assert closed_with_nothing_said(sock), f"{target} kept a connection after {payload[:20]!r}"
    return sent


def slot_logs(job: LocalJob) -> list[Path]:
    match = re.search(r"worker logs in (\S+)", job.output())
    assert match, job.describe()
    return sorted(Path(match.group(1)).glob("slot-*.log"))


def assert_running_unharmed(job: LocalJob) -> dict[str, Any]:
    info = job.job()
    assert info["state"] == "RUNNING" and info["restarts"] == 0 and info["attempt"] == 0, info
    return info


def test_strangers_on_the_data_and_control_ports_never_harm_the_job(tmp_path: Path) -> None:
    count = 60_000
    out = (tmp_path / "out").as_uri()
    with LocalJob(
        KEYED_SUM, f"out={out}", f"count={count}", "rate=1500", checkpoint_dir=(tmp_path / "checkpoints").as_uri()
    ) as job:
        job.wait_for_checkpoints(1)
        info = assert_running_unharmed(job)
        slot = next(w for w in info["workers"] if w["slot"] == 0)
        data, slot_pid = address(slot["address"]), int(slot["pid"])
        control, jm_pid = address(info["control_address"]), job._require().pid
        slot_rss, jm_rss = rss_mib(slot_pid), rss_mib(jm_pid)

        # (b) the data port: a wrong HMAC, a length-0 frame, a HELLO that is not a map, 4 GiB announced + 400 MiB
        attack(data, hello(os.urandom(32)))
        attack(data, hello(os.urandom(32), attempt=info["attempt"]))
        attack(data, HEADER.pack(0, 0, 0, 0, 0))
        attack(data, frame(0, msgpack.packb([1, 2, 3])))
        attack(data, frame(1, b"\x80\x05records"))  # a record batch before any handshake
        sent = attack(data, b"\xff\xff\xff\xff", then_stream=400 * MIB)
        assert sent < 400 * MIB, "the data port read 400 MiB from a stranger"
        assert rss_mib(slot_pid) - slot_rss < 50
        assert_running_unharmed(job)

        # (c) the control port: a registration without the secret, a 400 MiB WebSocket message, a 400 MiB frame
        attack(control, hello(os.urandom(32)) + REGISTER)
        attack(control, REGISTER)
        upgrade = (
            b"GET /internal/control HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            + b"\x82\x7f"
            + struct.pack(">Q", 400 * MIB)
        )
        assert attack(control, upgrade, then_stream=400 * MIB) < 400 * MIB
        assert attack(control, HEADER.pack(400 * MIB + 13, 0, 0, 0, 0), then_stream=400 * MIB) < 400 * MIB
        assert rss_mib(jm_pid) - jm_rss < 50
        with pytest.raises(urllib.error.HTTPError) as gone:  # the old WebSocket route on the REST port
            urllib.request.urlopen(f"{job.rest_url}/internal/control", timeout=10)
        assert gone.value.code == 404
        assert_running_unharmed(job)

        # (d) 200 idle connections on each port: at most 16 are challenged, all are closed after the deadline
        for target in (data, control):
            started = time.monotonic()
            socks = [socket.create_connection(target, timeout=10) for _ in range(200)]
            challenged = 0
            for sock in socks:
                sock.settimeout(HANDSHAKE_S * 3)
                try:
                    received = sock.recv(65536)
                    challenged += bool(received)
                    if received:
                        assert closed_with_nothing_said(sock)
                except (ConnectionResetError, BrokenPipeError):
                    pass
                sock.close()
            assert 0 < challenged <= PENDING_LIMIT, (target, challenged)
            assert time.monotonic() - started < HANDSHAKE_S * 3
        checkpoints = job.checkpoints()["counts"]["completed"]
        job.wait_for_checkpoints(checkpoints + 2)
        assert_running_unharmed(job)

        assert job.wait(timeout=240) == 0, job.describe()
    problem = keyed_sum.check_exactly_once(read_committed(out), count)
    assert problem is None, problem
    assert "Traceback" not in job.output()
    logs = "\n".join(p.read_text() for p in slot_logs(job))
    assert "Traceback" not in logs
    assert "refused a data connection from 127.0.0.1" in logs and "wrong proof" in logs
    assert re.search(r"refused a data connection from \S+: a frame of \d+ bytes exceeds the limit", logs)


def test_no_stranger_registers_as_a_slot_in_a_restart_s_registration_window(tmp_path: Path) -> None:
    count = 30_000
    out = (tmp_path / "out").as_uri()
    with LocalJob(
        KEYED_SUM, f"out={out}", f"count={count}", "rate=1500", checkpoint_dir=(tmp_path / "checkpoints").as_uri()
    ) as job:
        job.wait_for_checkpoints(1)
        info = job.job()
        control, jm_pid = address(info["control_address"]), job._require().pid
        stop = threading.Event()
        tries: list[int] = []
        failures: list[str] = []

        def stranger() -> None:
            """Keeps trying to register (with a forged proof, and without any) until told to stop."""
            while not stop.is_set():
                try:
                    attack(control, hello(os.urandom(32)) + REGISTER if len(tries) % 2 else REGISTER)
                    tries.append(1)
                except AssertionError as err:
                    failures.append(str(err))
                except OSError:
                    time.sleep(0.01)

        thread = threading.Thread(target=stranger, daemon=True)
        thread.start()
        try:
            job.kill_worker(0)
            restarted = job.wait_for_running(restarts=1, timeout=120)
            time.sleep(0.5)
        finally:
            stop.set()
            thread.join(30)
        assert failures == [] and len(tries) >= 5, (failures, len(tries))
        pids = [int(w["pid"]) for w in restarted["workers"]]
        assert len(pids) == 2
        for pid in pids:  # every registered slot is one of the JobMaster's own slot processes
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            assert parent == jm_pid, (pid, parent, jm_pid)
        assert job.wait(timeout=240) == 0, job.describe()
    problem = keyed_sum.check_exactly_once(read_committed(out), count)
    assert problem is None, problem


def test_the_secret_reaches_the_slots_by_environment_only_and_opens_the_planes(tmp_path: Path) -> None:
    """The positive control of the attacks above: with the job's secret the same handshake succeeds."""
    secret = new_job_secret()
    with LocalJob(
        KEYED_SUM,
        f"out={(tmp_path / 'out').as_uri()}",
        "count=15000",
        "rate=1500",
        checkpoint_dir=(tmp_path / "checkpoints").as_uri(),
        env={**os.environ, "STREAMJOB_JOB_SECRET": secret},
    ) as job:
        info = job.wait_for_running()
        for worker in info["workers"]:
            pid = int(worker["pid"])
            assert secret.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
            assert f"STREAMJOB_JOB_SECRET={secret}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")

        async def handshake(with_secret: str) -> None:
            reader, writer = await asyncio.open_connection(*address(info["control_address"]))
            try:
                await connect(reader, writer, with_secret, CONTROL_LABEL)
            finally:
                writer.close()

        asyncio.run(handshake(secret))
        with pytest.raises(HandshakeError):
            asyncio.run(handshake(new_job_secret()))
        control = info["control_address"]
        impostor = run_cli(
            "slot", "--jobmaster", control, env={**os.environ, "STREAMJOB_JOB_SECRET": new_job_secret()}, timeout=60
        )
        assert impostor.returncode == 2 and "Traceback" not in impostor.stderr, impostor.stderr
        assert f"the JobMaster at {control} refused this slot" in impostor.stderr
        assert job.wait(timeout=120) == 0, job.describe()
