"""Which failures end a job at once (``failures.py``), in-flight data that does not decode, and late slot messages."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from streamjob.worker.errors import (
    CheckpointError,
    CorruptStateError,
    EntrypointError,
    PipelineError,
    RestoreError,
    StorageError,
)
from streamjob.worker.failures import FailureClass, classify, failure_fields, final_failure
from streamjob.worker.runtime.in_flight_restore import read_in_flight
from streamjob.worker.snapshot.handles import StateHandle
from streamjob.worker.state.serializers import SafeSerializer

pytestmark = pytest.mark.unit
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "balance.py"


def test_corrupt_and_incompatible_restores_are_final_anywhere_load_errors_only_at_deploy() -> None:
    assert classify(CorruptStateError("x")) is FailureClass.CORRUPT_RESTORE
    assert classify(RestoreError("x")) is FailureClass.INCOMPATIBLE_RESTORE
    assert classify(EntrypointError("x"), deploying=True) is FailureClass.JOB_LOAD
    assert classify(PipelineError("x"), deploying=True) is FailureClass.JOB_LOAD
    assert classify(PipelineError("x")) is None, "a pipeline error while running is the user's failure: restart"
    for transient in (StorageError("S3 unreachable"), CheckpointError("x"), RuntimeError("x"), OSError("x")):
        assert classify(transient, deploying=True) is None, transient


def test_corrupt_state_is_a_storage_error_with_exit_3_and_still_a_restore_error() -> None:
    err = CorruptStateError("state file x is corrupted")
    assert isinstance(err, StorageError) and isinstance(err, RestoreError)
    assert err.exit_code == 3


@pytest.mark.parametrize(
    ("err", "deploying", "code", "words"),
    [
        (CorruptStateError("state file a is corrupted"), False, 3, "--restore URI"),
        (RestoreError("serializer changed"), False, 4, "does not fit the job's code"),
        (EntrypointError("the job's entrypoint raised ImportError: nope"), True, 2, "cannot load the job"),
    ],
)
def test_a_classified_failure_becomes_a_final_one_with_its_exit_code(
    err: Exception, deploying: bool, code: int, words: str
) -> None:
    message = {"t": "task_failed", "error": f"{type(err).__name__}: {err}", **failure_fields(err, deploying=deploying)}
    final = final_failure("task sums (2)", message)
    assert final is not None
    assert final.exit_code == code
    assert final.reason.startswith("task sums (2) ") and str(err) in final.reason and words in final.reason


def test_unclassified_or_unknown_failures_restart() -> None:
    assert final_failure("worker slot 0", {"error": "boom", **failure_fields(RuntimeError("boom"))}) is None
    assert final_failure("worker slot 0", {"error": "boom", "failure_class": "from-the-future"}) is None
    assert final_failure("worker slot 0", {"error": "boom"}) is None
    legacy = final_failure("worker slot 0", {"error": "file gone", "corrupt_restore": True})
    assert legacy is not None and legacy.exit_code == 3


class _Reader:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def read(self, handle: StateHandle) -> bytes:
        return self.files[handle.path]


def _handle(path: str, data: bytes) -> StateHandle:
    return StateHandle(path=path, size=len(data), sha256=hashlib.sha256(data).hexdigest())


def test_in_flight_records_are_read_in_order_and_undecodable_ones_are_corrupt() -> None:
    serializer = SafeSerializer(())
    good = [serializer.encode([1, 2]), serializer.encode(["a"])]
    reader = _Reader({"a": good[0], "b": good[1], "bad": b"\xc1\xc1\xc1", "dict": serializer.encode({"x": 1})})
    assert read_in_flight(reader, [_handle("a", good[0]), _handle("b", good[1])], serializer) == [1, 2, "a"]
    with pytest.raises(CorruptStateError, match="in-flight data file bad is corrupted"):
        read_in_flight(reader, [_handle("bad", b"\xc1\xc1\xc1")], serializer)
    with pytest.raises(CorruptStateError, match="not a list of records"):
        read_in_flight(reader, [_handle("dict", reader.files["dict"])], serializer)
