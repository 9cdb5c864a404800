"""Savepoint targets: normalized, refused when relative or with '..', allowed only under a root."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from streamjob.worker.config import JobConfig, parse_job_config
from streamjob.worker.errors import ConfigError
from streamjob.worker.jobmaster.savepoint_targets import (
    InvalidSavepointTarget,
    SavepointTargetRefused,
    check_savepoint_target,
    is_under,
    savepoint_roots,
)
from streamjob.worker.storage.uri import StorageUri

pytestmark = pytest.mark.unit

ROOTS = savepoint_roots("file:///data/sp", ["s3://bucket/savepoints"])


def identity(path: str) -> str:
    return path


@pytest.mark.parametrize(
    "target, normalized",
    [
        ("file:///data/sp", "file:///data/sp"),
        ("/data/sp/", "file:///data/sp"),
        ("file:///data/sp/a/b/", "file:///data/sp/a/b"),
        ("/data/sp/a", "file:///data/sp/a"),
        ("file://localhost/data/sp/a", "file:///data/sp/a"),
        ("file:///data/sp/a%20b", "file:///data/sp/a b"),
        ("s3://bucket/savepoints/x/", "s3://bucket/savepoints/x"),
        ("s3://bucket/savepoints", "s3://bucket/savepoints"),
    ],
)
def test_targets_under_a_root_are_accepted_normalized(target: str, normalized: str) -> None:
    assert str(check_savepoint_target(target, ROOTS, resolve=identity)) == normalized


@pytest.mark.parametrize(
    "target",
    [
        "/data/spx",  # a prefix of the text, not of the path
        "/data/s",
        "/data",
        "/",
        "file:///etc/cron.d",
        "/tmp/anything",
        "s3://bucket/savepoints-other",
        "s3://bucket/other/savepoints",
        "s3://other-bucket/savepoints",
        "s3://bucket",
        "file:///bucket/savepoints",
    ],
)
def test_targets_outside_every_root_are_refused(target: str) -> None:
    with pytest.raises(SavepointTargetRefused, match="outside the job's savepoint roots") as refused:
        check_savepoint_target(target, ROOTS, resolve=identity)
    assert "--allow-savepoint-root" in str(refused.value)


@pytest.mark.parametrize(
    "target",
    [
        "relative/dir",
        "data/sp",
        "./sp",
        "../sp",
        "/data/sp/../../etc",
        "/data/sp/./x",
        "file:///data/sp/../../etc",
        "file:///data/sp/%2e%2e/%2e%2e/etc",
        "file:///data//sp",
        "s3://bucket/savepoints/../x",
        "file://evil.example/data/sp",
        "http://example.com/data/sp",
        "",
        "   ",
    ],
)
def test_relative_dotted_and_malformed_targets_are_invalid(target: str) -> None:
    with pytest.raises(InvalidSavepointTarget, match="savepoint target"):
        check_savepoint_target(target, ROOTS, resolve=identity)


def test_a_symlink_inside_the_root_cannot_lead_out_of_it(tmp_path: Path) -> None:
    root = tmp_path / "sp"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    roots = savepoint_roots(root.as_uri(), [])
    with pytest.raises(SavepointTargetRefused):
        check_savepoint_target(str(root / "link" / "x"), roots)
    assert str(check_savepoint_target(str(root / "real" / "x"), roots)) == (root / "real" / "x").as_uri()


def test_a_root_reached_through_a_symlink_still_contains_its_targets(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    alias = tmp_path / "alias"
    alias.symlink_to(real)
    roots = savepoint_roots(alias.as_uri(), [])
    assert check_savepoint_target(str(real / "x"), roots) == StorageUri("file", "", str(real / "x"))
    assert check_savepoint_target(str(alias / "x"), roots) == StorageUri("file", "", str(alias / "x"))


def test_no_roots_refuses_every_target() -> None:
    with pytest.raises(SavepointTargetRefused, match=r"\(none\)"):
        check_savepoint_target("/data/sp", (), resolve=identity)


def test_allowed_roots_in_the_job_config_are_checked() -> None:
    config = JobConfig(name="j", entrypoint="j.py", allowed_savepoint_roots=["s3://b/p", "/mnt/sp", "file:///x/"])
    assert len(savepoint_roots(None, config.allowed_savepoint_roots)) == 3
    for bad in ("relative/dir", "/a/../b", "ftp://x/y"):
        with pytest.raises(ConfigError, match=r"allowed_savepoint_roots: invalid storage URI"):
            parse_job_config({"name": "j", "entrypoint": "j.py", "allowed_savepoint_roots": [bad]}, source="t")


_SEGMENTS = ["a", "b", "ab", "a.b"]
_PATHS = [list(p) for n in range(4) for p in itertools.product(_SEGMENTS, repeat=n)]


def test_containment_is_by_whole_segments() -> None:
    """Every pair of paths of up to 3 segments over names that are prefixes of each other."""
    for root, target in itertools.product(_PATHS, repeat=2):
        expected = target[: len(root)] == root
        file_root, file_target = (StorageUri("file", "", "/" + "/".join(p)) for p in (root, target))
        assert is_under(file_target, file_root) == expected, (root, target)
        s3_root, s3_target = (StorageUri("s3", "bkt", "/".join(p)) for p in (root, target))
        assert is_under(s3_target, s3_root) == expected, (root, target)


def test_realpath_is_the_default_resolution(tmp_path: Path) -> None:
    # the default compares real paths: the same directory named two ways is the same root
    os.symlink(tmp_path, tmp_path.parent / f"{tmp_path.name}-alias")
    alias = tmp_path.parent / f"{tmp_path.name}-alias"
    try:
        assert check_savepoint_target(str(alias / "x"), savepoint_roots(tmp_path.as_uri(), []))
    finally:
        alias.unlink()
