import pytest

from streamjob.worker.storage.retention import CheckpointEntry, plan_retention

pytestmark = pytest.mark.unit


def done(cid: int, *shared: str) -> CheckpointEntry:
    return CheckpointEntry(cid, True, frozenset(shared))


def test_keeps_newest_and_deletes_older() -> None:
    plan = plan_retention([done(1), done(2), done(3), done(4)], retained=2)
    assert plan.retained_ids == (4, 3)
    assert plan.delete_ids == (1, 2)
    assert plan.delete_shared == ()


def test_shared_files_are_kept_while_a_retained_checkpoint_references_them() -> None:
    entries = [done(1, "shared/a", "shared/b"), done(2, "shared/b", "shared/c"), done(3, "shared/c", "shared/d")]
    plan = plan_retention(entries, retained=1)
    assert plan.delete_ids == (1, 2)
    assert plan.delete_shared == ("shared/a", "shared/b")
    plan = plan_retention(entries, retained=2)
    assert plan.delete_ids == (1,)
    assert plan.delete_shared == ("shared/a",)


def test_incomplete_and_corrupt_directories() -> None:
    entries = [
        CheckpointEntry(1, False),
        done(2, "shared/x"),
        CheckpointEntry(3, True, None),
        done(4),
        CheckpointEntry(5, False),
        done(6),
        CheckpointEntry(7, False),
        CheckpointEntry(8, True, None),
    ]
    plan = plan_retention(entries, retained=2)
    assert plan.retained_ids == (6, 4)
    # 5 and 7/8 are newer than the oldest retained (4): maybe in progress, or evidence: kept.
    assert plan.delete_ids == (1, 2, 3)
    assert plan.delete_shared == ("shared/x",)


def test_nothing_is_deleted_without_a_valid_checkpoint() -> None:
    plan = plan_retention([CheckpointEntry(1, False), CheckpointEntry(2, True, None)], retained=1)
    assert plan.empty and plan.retained_ids == ()
    assert plan_retention([], retained=3).empty


def test_retained_must_be_positive() -> None:
    with pytest.raises(ValueError, match="retained"):
        plan_retention([done(1)], retained=0)
