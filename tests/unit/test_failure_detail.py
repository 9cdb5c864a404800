"""A failure's root cause: described where it is raised, carried by the slot's message, shown by GET /job."""

from __future__ import annotations

import pytest

from streamjob.worker.failures import LINE_CHARS, TRACEBACK_LINES, describe
from streamjob.worker.protocol.messages import TO_JOBMASTER, TaskFailed, decode, encode
from streamjob.worker.protocol.rest import FailureDetail, JobOverview

pytestmark = pytest.mark.unit


class _Operator:
    """Stands in for a runtime operator: a ``uid`` and a runtime module."""

    __module__ = "streamjob.worker.runtime.operators"

    def __init__(self, uid: str) -> None:
        self.uid = uid

    def process(self, fn: object) -> None:
        assert callable(fn)
        fn()


def _user_map() -> None:
    raise ValueError("bad record 42")


def _raised(fn: object) -> BaseException:
    try:
        assert callable(fn)
        fn()
    except BaseException as err:  # the test inspects whatever was raised
        return err
    raise AssertionError("did not raise")


def test_describe_names_the_exception_the_innermost_operator_and_the_traceback_end() -> None:
    outer, inner = _Operator("source"), _Operator("parse-map")
    err = _raised(lambda: outer.process(lambda: inner.process(_user_map)))
    d = describe(err)
    assert d.exception == "ValueError" and d.message == "bad record 42"
    assert d.operator_uid == "parse-map"
    assert d.traceback[-1] == "ValueError: bad record 42"
    assert any("_user_map" in line for line in d.traceback)


def test_describe_without_an_operator_is_bounded_in_lines_and_width() -> None:
    def deep(n: int) -> None:
        if n == 0:
            raise KeyError("k" * 5000)
        deep(n - 1)

    d = describe(_raised(lambda: deep(50)))
    assert d.operator_uid is None and d.exception == "KeyError" and len(d.message) == 2000
    assert 3 <= len(d.traceback) <= TRACEBACK_LINES and all(len(line) <= LINE_CHARS for line in d.traceback)
    assert d.traceback[-1].startswith("KeyError: 'kkk") and not any(
        set(line.strip()) <= set("^~") for line in d.traceback
    )


def test_an_object_with_a_uid_outside_the_runtime_is_not_taken_for_an_operator() -> None:
    class UserThing:
        uid = "not-an-operator"

        def run(self) -> None:
            raise RuntimeError("x")

    assert describe(_raised(UserThing().run)).operator_uid is None


def test_task_failed_carries_the_description_and_an_older_message_still_decodes() -> None:
    sent = TaskFailed(
        vertex="v", subtask=0, error="ValueError: x", exception="ValueError", operator_uid="m", traceback=["a", "b"]
    )
    back = decode(encode(sent), TO_JOBMASTER)
    assert back == sent
    old = decode(encode(TaskFailed(vertex="v", subtask=0, error="E: y")), TO_JOBMASTER)
    assert isinstance(old, TaskFailed) and old.traceback == [] and old.operator_uid is None


def test_job_overview_without_failure_detail_still_parses() -> None:
    body = {
        "id": "j", "name": "n", "namespace": "ns", "state": "RUNNING", "parallelism": 1, "max_parallelism": 8,
        "start_time": 0.0, "restored_from": None, "attempt": 1, "restarts": 0, "failure": None,
        "vertices": [], "workers": [], "records_in": 0, "control_address": "a", "checkpoints_uri": "file:///c",
        "savepoints_uri": None,
    }  # fmt: skip
    assert JobOverview.model_validate(body).failure_detail is None
    detail = FailureDetail(exception="ValueError", message="m", task="map (1)", operator_uid="u", traceback=("l",))
    parsed = JobOverview.model_validate(body | {"failure_detail": detail.to_json()})
    assert parsed.failure_detail == detail
