"""What ``streamjob run`` defers: the modules its CLI loads before the slots start, and the slots' address pipe."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from streamjob.worker.cli_parser import parse_args
from streamjob.worker.cli_values import read_jobmaster_address
from streamjob.worker.errors import ConfigError

pytestmark = pytest.mark.unit

# Loaded only after the slots were started (``local._run``, ``loader``) or only by the jobs that use them.
DEFERRED = (
    "aiohttp",
    "prometheus_client",
    "boto3",
    "rocksdict",
    "streamjob.worker.api",
    "streamjob.worker.jobmaster.jobmaster",
    "streamjob.worker.jobmaster.rest",
    "streamjob.worker.storage",
)


def _modules_after(statement: str) -> set[str]:
    """``sys.modules`` of a fresh interpreter after ``statement`` (this test's process has loaded everything)."""
    probe = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd="/")
    return set(json.loads(done.stdout))


@pytest.mark.parametrize("module", ["streamjob.worker.cli", "streamjob.worker.local"])
def test_what_runs_before_the_slots_start_loads_no_jobmaster_stack(module: str) -> None:
    loaded = _modules_after(f"import {module}")
    assert sorted(m for m in DEFERRED if m in loaded) == []


def test_the_slot_process_loads_no_http_s3_or_rocksdb_code() -> None:
    loaded = _modules_after("import streamjob.worker.slot")
    assert sorted(m for m in ("aiohttp", "prometheus_client", "boto3", "botocore", "rocksdict") if m in loaded) == []


def test_a_prestarted_slot_reads_its_jobmaster_from_one_line() -> None:
    assert read_jobmaster_address(io.BytesIO(b"127.0.0.1:40123\n")) == "127.0.0.1:40123"


@pytest.mark.parametrize("data", [b"", b"\n"])
def test_no_address_means_the_jobmaster_is_gone(data: bytes) -> None:
    with pytest.raises(ConfigError, match="ended before it gave this slot its address"):
        read_jobmaster_address(io.BytesIO(data))


def test_a_malformed_address_is_refused() -> None:
    with pytest.raises(ConfigError, match="is not a JobMaster address"):
        read_jobmaster_address(io.BytesIO(b"127.0.0.1:http\n"))


def test_an_endless_line_is_not_read_whole() -> None:
    with pytest.raises(ConfigError):
        read_jobmaster_address(io.BytesIO(b"1" * 10_000_000))


def test_slot_takes_dash_for_its_pipe_and_still_checks_addresses(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_args(["slot", "--jobmaster", "-"]).jobmaster == "-"
    assert parse_args(["slot", "--jobmaster", "10.0.0.5:6123"]).jobmaster == "10.0.0.5:6123"
    with pytest.raises(SystemExit):
        parse_args(["slot", "--jobmaster", "nope"])
    assert "is not a JobMaster address" in capsys.readouterr().err


def test_the_rest_server_loads_prometheus_client_at_the_first_scrape_only() -> None:
    assert "prometheus_client" not in _modules_after("import streamjob.worker.jobmaster.rest")


#: What ``streamjob run``'s process imports before its JobMaster hands the slots their address.
JOBMASTER_START = (
    "import streamjob.worker.local as local\n"
    "local.import_shared()\n"
    "import streamjob.worker.jobmaster.control, streamjob.worker.jobmaster.plan\n"
    "import streamjob.worker.jobmaster.rest_socket, streamjob.worker.protocol.tls, streamjob.worker.rest_token_file"
)


def test_the_cli_module_imports_no_pydantic_before_main_pauses_the_collector() -> None:
    assert (
        sorted(
            m
            for m in ("pydantic", "streamjob.worker.config", "streamjob.worker.cli_values")
            if m in _modules_after("import streamjob.worker.cli")
        )
        == []
    )


def test_the_jobmaster_start_loads_no_http_s3_rocksdb_or_state_backend() -> None:
    loaded = _modules_after(JOBMASTER_START)
    assert "streamjob.worker.jobmaster.jobmaster" in loaded and "streamjob.worker.api" in loaded  # the probe ran
    later = (
        "aiohttp",
        "prometheus_client",
        "boto3",
        "botocore",
        "rocksdict",
        "streamjob.worker.jobmaster.rest",
        "streamjob.worker.state.backend",
        "streamjob.worker.state.hashmap_states",
        "streamjob.worker.state.factory",
        "streamjob.worker.state.operator_state",
    )
    assert sorted(m for m in later if m in loaded) == []


def test_the_state_package_still_gives_every_public_name() -> None:
    import streamjob.worker.state as state
    from streamjob.worker.state.backend import KeyedStateBackend

    assert {name: getattr(state, name) for name in state.__all__}["KeyedStateBackend"] is KeyedStateBackend
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        state.nope  # noqa: B018
    loaded = _modules_after("from streamjob.worker.state import ValueStateDescriptor, create_keyed_backend")
    assert "streamjob.worker.state.factory" in loaded
