"""The operator's command line: failed-pod retention and kopf's handler logging."""

from __future__ import annotations

import logging

import pytest

from streamjob.operator.main import KOPF_PEERING_LOGGER, parse_args, quiet_kopf

pytestmark = pytest.mark.unit


def test_failed_pods_are_kept_an_hour_by_default_and_the_flag_is_checked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("STREAMJOB_FAILED_POD_RETENTION_SECONDS", raising=False)
    assert parse_args([]).failed_pod_retention_s == 3600
    assert parse_args(["--failed-pod-retention", "0"]).failed_pod_retention_s == 0
    monkeypatch.setenv("STREAMJOB_FAILED_POD_RETENTION_SECONDS", "120")
    assert parse_args([]).failed_pod_retention_s == 120
    with pytest.raises(SystemExit):
        parse_args(["--failed-pod-retention", "-1"])
    assert "--failed-pod-retention must be >= 0 seconds, got -1" in capsys.readouterr().err


def test_kopf_handler_lines_are_quiet_unless_asked_for() -> None:
    kopf_log = logging.getLogger("kopf")
    before = kopf_log.level
    try:
        kopf_log.setLevel(logging.NOTSET)
        quiet_kopf(parse_args([]))
        assert kopf_log.level == logging.WARNING
        kopf_log.setLevel(logging.NOTSET)
        quiet_kopf(parse_args(["--verbose-handlers"]))
        assert kopf_log.level == logging.NOTSET
        quiet_kopf(parse_args(["--log-level", "debug"]))
        assert kopf_log.level == logging.NOTSET
    finally:
        kopf_log.setLevel(before)


def test_kopf_peering_lines_stay_when_handler_lines_are_quiet() -> None:
    """With several replicas, "Pausing/Resuming operations" is how one tells which replica is active."""
    peering = logging.getLogger(KOPF_PEERING_LOGGER)
    before = peering.level, logging.getLogger("kopf").level
    try:
        quiet_kopf(parse_args([]))
        assert peering.getEffectiveLevel() == logging.INFO
        assert logging.getLogger("kopf._core.engines.activities").getEffectiveLevel() == logging.WARNING
    finally:
        peering.setLevel(before[0])
        logging.getLogger("kopf").setLevel(before[1])


def test_a_service_link_variable_in_place_of_the_metrics_port_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What Kubernetes injects for a Service named streamjob-metrics (the chart's, for release "streamjob").
    monkeypatch.setenv("STREAMJOB_METRICS_PORT", "tcp://10.96.72.162:8080")
    with pytest.raises(SystemExit) as exit_info:
        parse_args([])
    message = str(exit_info.value.code)
    assert "STREAMJOB_METRICS_PORT='tcp://10.96.72.162:8080' is not a port number" in message
    assert "enableServiceLinks: false" in message and "\n" not in message
    monkeypatch.setenv("STREAMJOB_METRICS_PORT", "9090")
    assert parse_args([]).metrics_port == 9090
