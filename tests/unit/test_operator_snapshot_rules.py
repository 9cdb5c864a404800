"""The pure rules of snapshots: cron, periodic savepoints, retention, old lineages, disposal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streamjob.operator.cron import CronError, parse_cron
from streamjob.operator.model.snapshot import SnapshotState, SnapshotStorage, StreamJobSnapshotStatus
from streamjob.operator.model.spec import SavepointsSpec, StreamJobSpec
from streamjob.operator.model.status import Deployment, LifecycleState, StreamJobStatus
from streamjob.operator.observer.snapshots import SnapshotView, view_snapshot
from streamjob.operator.reconciler import retention
from streamjob.operator.timeutil import format_time
from streamjob.operator.validation import validate

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday
SP = "s3://b/sp/ns/demo"
HEX = [f"{n:032x}" for n in range(1, 6)]


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# -- cron ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/15 * * * *", T0, at(15)),
        ("0 3 * * *", T0, datetime(2026, 3, 3, 3, 0, tzinfo=UTC)),
        ("30 9 * * 1-5", T0, datetime(2026, 3, 3, 9, 30, tzinfo=UTC)),
        ("0 0 * * 0", T0, datetime(2026, 3, 8, tzinfo=UTC)),  # Sunday
        ("0 0 * * 7", T0, datetime(2026, 3, 8, tzinfo=UTC)),  # 7 is Sunday too
        ("0 12 1 * *", T0, datetime(2026, 4, 1, 12, tzinfo=UTC)),
        ("5,35 10 * * *", T0, at(5)),
        ("0 0 29 2 *", T0, datetime(2028, 2, 29, tzinfo=UTC)),
        ("0 0 13 * 5", T0, datetime(2026, 3, 6, tzinfo=UTC)),  # day 13 OR a Friday, as in cron
    ],
)
def test_cron_next_time(expression: str, after: datetime, expected: datetime) -> None:
    assert parse_cron(expression).next_after(after) == expected


@pytest.mark.parametrize(
    ("expression", "names"),
    [
        ("* * * *", "five are needed"),
        ("61 * * * *", "minute field '61'"),
        ("* 24 * * *", "hour field"),
        ("* * 0 * *", "day of month field"),
        ("* * * 13 *", "month field"),
        ("* * * * 8", "day of week field"),
        ("*/0 * * * *", "minute field"),
        ("a * * * *", "minute field 'a'"),
        ("5-1 * * * *", "ranges ascending"),
        ("0 0 30 2 *", "never fires"),
    ],
)
def test_cron_errors_name_the_field(expression: str, names: str) -> None:
    with pytest.raises(CronError, match=names.replace("(", r"\(")):
        parse_cron(expression)


def test_bad_cron_and_both_schedules_are_spec_problems() -> None:
    base: dict[str, Any] = {"image": "i", "entrypoint": "m:f", "storage": {"checkpointsUri": "s3://b/c"}}
    bad = StreamJobSpec.parse({**base, "savepoints": {"cron": "0 25 * * *"}})
    assert any(p.startswith("spec.savepoints.cron: ") and "hour" in p for p in validate(bad, name="x", namespace="n"))
    both = StreamJobSpec.parse({**base, "savepoints": {"cron": "0 1 * * *", "interval": "1h"}})
    assert "spec.savepoints: set either interval or cron, not both" in validate(both, name="x", namespace="n")
    named = StreamJobSpec.parse({**base, "initialSavepointPath": "s3://b/x", "restoreFrom": {"snapshotName": "s"}})
    assert any(p.startswith("spec.restoreFrom: ") for p in validate(named, name="x", namespace="n"))


# -- periodic ------------------------------------------------------------------------------------


def test_periodic_interval_counts_from_the_later_of_last_trigger_and_attempt_start() -> None:
    spec = SavepointsSpec(interval="10m")
    assert not retention.periodic_due(spec, last=None, running_since=None, now=at(60))
    assert not retention.periodic_due(spec, last=None, running_since=T0, now=at(9.9))
    assert retention.periodic_due(spec, last=None, running_since=T0, now=at(10))
    assert not retention.periodic_due(spec, last=at(5), running_since=T0, now=at(14))
    assert retention.periodic_due(spec, last=at(5), running_since=T0, now=at(15))
    assert not retention.periodic_due(spec, last=at(5), running_since=at(12), now=at(21))  # redeployed since
    assert not retention.periodic_due(SavepointsSpec(), last=None, running_since=T0, now=at(10_000))


def test_periodic_cron_fires_once_per_scheduled_time() -> None:
    spec = SavepointsSpec(cron="*/30 * * * *")
    assert not retention.periodic_due(spec, last=None, running_since=at(1), now=at(29))
    assert retention.periodic_due(spec, last=None, running_since=at(1), now=at(30))
    assert not retention.periodic_due(spec, last=at(30), running_since=at(1), now=at(59))
    assert retention.periodic_due(spec, last=at(30), running_since=at(1), now=at(61))


# -- retention -----------------------------------------------------------------------------------


def snap(
    name: str,
    minutes: float,
    state: SnapshotState = SnapshotState.COMPLETED,
    *,
    trigger: str = "periodic",
    job: str = "demo",
    path: str | None = "",
    **spec: Any,
) -> SnapshotView:
    body: dict[str, Any] = {
        "metadata": {"name": name, "labels": {"streamjob.dev/trigger": trigger}}
        if trigger != "user"
        else {"name": name},
        "spec": {"jobReference": {"name": job}, **spec},
        "status": {
            "state": state.value,
            "resultTimestamp": format_time(at(minutes)),
            **({"path": path if path else f"{SP}/savepoint-{name}"} if path is not None else {}),
        },
    }
    return view_snapshot(body)


def test_retention_keeps_max_count_newest_and_never_users_or_restore_points() -> None:
    views = (*tuple(snap(f"p{i}", i) for i in range(6)), snap("mine", -5, trigger="user"))
    assert retention.expired_snapshots(views, SavepointsSpec(max_count=2), now=at(10), used=set()) == [
        "p3",
        "p2",
        "p1",
        "p0",
    ]
    used = {f"{SP}/savepoint-p1"}
    assert "p1" not in retention.expired_snapshots(views, SavepointsSpec(max_count=2), now=at(10), used=used)


def test_retention_by_age_keeps_the_newest_completed_whatever_its_age() -> None:
    views = (snap("old", 0), snap("older", -10), snap("failed", -20, SnapshotState.FAILED, path=None))
    spec = SavepointsSpec(max_count=10, max_age="1h")
    assert retention.expired_snapshots(views, spec, now=at(60 * 24), used=set()) == ["older", "failed"]
    assert retention.expired_snapshots(views, spec, now=at(30), used=set()) == []


def test_retention_leaves_pending_and_deleting_snapshots() -> None:
    views = (snap("a", 0), snap("b", 1, SnapshotState.IN_PROGRESS, path=None), snap("c", 2))
    assert retention.expired_snapshots(views, SavepointsSpec(max_count=1), now=at(3), used=set()) == ["a"]


def test_old_lineages_only_hex_job_ids_not_current_nor_in_use() -> None:
    found = (*HEX, "savepoint-abc", "notes")
    used = {f"s3://b/c/ns/demo/{HEX[1]}/chk-4"}
    assert retention.old_lineages(found, current=HEX[0], keep=set(), used=used) == HEX[2:]
    assert retention.old_lineages(found, current=HEX[0], keep={HEX[3]}, used=set()) == [HEX[1], HEX[2], HEX[4]]


def test_in_use_holds_every_restore_point_in_status() -> None:
    dep = Deployment(attempt=1, job_id=HEX[0], spec={}, restore_from=f"{SP}/savepoint-a/", started_at="t")
    status = StreamJobStatus(deployment=dep, restore_from=f"{SP}/savepoint-b/_metadata")
    assert retention.in_use(status) == {f"{SP}/savepoint-a", f"{SP}/savepoint-b"}


# -- disposal ------------------------------------------------------------------------------------

STORAGE = SnapshotStorage(checkpoints_uri="s3://b/c", savepoints_uri="s3://b/sp")


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        (f"{SP}/savepoint-x", True),
        ("s3://b/c/ns/demo/savepoint-x", True),  # savepointsUri unset: under checkpointsUri
        ("s3://b/sp/ns/other/savepoint-x", False),  # another job's
        ("s3://b/sp/other-ns/demo/savepoint-x", False),  # another namespace's
        ("s3://other/sp/ns/demo/savepoint-x", False),  # another bucket
        (f"{SP}/chk-3", False),  # not a savepoint directory
        (f"{SP}/../../x/savepoint-x", False),  # no way out of the root
        ("s3://b/sp/ns/demo/sub/savepoint-x", False),
    ],
)
def test_only_savepoints_under_the_jobs_own_storage_are_disposable(path: str, ok: bool) -> None:
    assert retention.disposable(snap("s", 0, trigger="user", path=path), STORAGE, "ns") is ok


def test_no_storage_known_disposes_nothing() -> None:
    assert not retention.disposable(snap("s", 0), None, "ns")


def test_disposal_refused_for_a_restore_point_and_a_named_restore_not_yet_deployed() -> None:
    view = snap("s", 0, trigger="user")
    path = view.status.path
    running = StreamJobStatus(
        lifecycle_state=LifecycleState.RUNNING,
        job_id=HEX[0],
        deployment=Deployment(attempt=1, job_id=HEX[0], spec={}, restore_from=path, started_at="t"),
        restore_from=path,
    )
    refusal = retention.disposal_refusal(view, running, None)
    assert refusal is not None and "restore point of StreamJob demo" in refusal and "disposeOnDelete: false" in refusal
    suspended = StreamJobStatus(lifecycle_state=LifecycleState.SUSPENDED, job_id=HEX[0], restore_from=path)
    assert retention.disposal_refusal(view, suspended, None) is not None
    moved_on = running.model_copy(update={"deployment": None, "restore_from": f"{SP}/savepoint-other"})
    assert retention.disposal_refusal(view, moved_on, None) is None
    deleting = running.model_copy(update={"lifecycle_state": LifecycleState.DELETING})
    assert retention.disposal_refusal(view, deleting, None) is None
    assert retention.disposal_refusal(view, None, None) is None
    spec = StreamJobSpec.parse(
        {
            "image": "i",
            "entrypoint": "m:f",
            "storage": {"checkpointsUri": "s3://b/c"},
            "restoreFrom": {"snapshotName": "s"},
        }
    )
    assert "restores it by name" in (retention.disposal_refusal(view, StreamJobStatus(), spec) or "")


def test_snapshot_view_reads_a_bad_spec_with_its_error() -> None:
    view = view_snapshot({"metadata": {"name": "x"}, "spec": {"jobReference": {"name": "demo"}, "type": "full"}})
    assert view.spec is None and view.spec_error is not None and view.spec_error.startswith("spec.type")
    assert view.job == "demo" and view.by_user and view.status == StreamJobSnapshotStatus()
