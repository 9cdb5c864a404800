from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamjob.worker.errors import ConfigError, PipelineError
from streamjob.worker.state.key_groups import (
    KeyGroupAssigner,
    key_group_for,
    key_group_range,
    operator_index_for,
)

pytestmark = pytest.mark.unit

# Computed once and checked in: a change here breaks every existing checkpoint.
EXPECTED_128 = [
    ("a", 116),
    ("user-1", 5),
    (1, 7),
    (0, 81),
    (-1, 72),
    (2**70, 127),
    (1.5, 29),
    (None, 49),
    (b"x", 20),
    ((1, "a"), 118),
]


@pytest.mark.parametrize(("key", "group"), EXPECTED_128)
def test_key_groups_are_pinned(key: object, group: int) -> None:
    assert key_group_for(key, 128) == group


def test_equal_keys_share_a_group() -> None:
    assert key_group_for(True, 128) == key_group_for(1, 128) == key_group_for(1.0, 128)
    assert key_group_for((1, 2.0), 4096) == key_group_for((1.0, 2), 4096)
    assert key_group_for(-0.0, 128) == key_group_for(0, 128)


def test_stable_across_hash_seeds() -> None:
    keys = [k for k, _ in EXPECTED_128]
    code = (
        f"from streamjob.worker.state.key_groups import key_group_for\nprint([key_group_for(k, 128) for k in {keys!r}])"
    )
    root = Path(__file__).resolve().parents[2]
    for seed in ("1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == str([g for _, g in EXPECTED_128])


@pytest.mark.parametrize("bad", [[1], {"a": 1}, {1}, object(), frozenset({1}), (1, [2])])
def test_unsupported_keys_are_rejected(bad: object) -> None:
    with pytest.raises(PipelineError, match="key_by"):
        key_group_for(bad, 128)
    with pytest.raises(PipelineError, match="str, an int or a tuple"):
        KeyGroupAssigner(128).assign(bad)


def test_assigner_matches_function_and_is_bounded() -> None:
    assigner = KeyGroupAssigner(1000, cache_size=100)
    for i in range(1000):
        key = f"k{i}"
        assert assigner.assign(key) == key_group_for(key, 1000)
        assert assigner.lookup(key) == key_group_for(key, 1000)
        assert assigner.cache_len() <= 100


def test_distribution_is_reasonable() -> None:
    counts = [0] * 128
    for i in range(128 * 200):
        counts[key_group_for(f"user-{i}", 128)] += 1
    assert min(counts) > 120 and max(counts) < 290


@pytest.mark.parametrize("max_p", [1, 2, 3, 7, 128, 129, 1000, 32768])
def test_ranges_partition_and_match_operator_index(max_p: int) -> None:
    for p in sorted({1, 2, 3, 5, 7, 16, 100, max_p} & set(range(1, max_p + 1))):
        covered = []
        for index in range(p):
            start, end = key_group_range(max_p, p, index)
            covered.extend(range(start, end + 1))
            for kg in (start, end, (start + end) // 2):
                if start <= end:
                    assert operator_index_for(kg, max_p, p) == index
        assert covered == list(range(max_p))


def test_flink_formula_examples() -> None:
    assert [key_group_range(128, 3, i) for i in range(3)] == [(0, 42), (43, 85), (86, 127)]
    assert key_group_range(10, 4, 1) == (3, 4)


@pytest.mark.parametrize(
    ("max_p", "p", "index"), [(0, 1, 0), (32769, 1, 0), (128, 0, 0), (128, 129, 0), (128, 2, 2), (128, 2, -1)]
)
def test_invalid_parallelism_is_a_config_error(max_p: int, p: int, index: int) -> None:
    with pytest.raises(ConfigError):
        key_group_range(max_p, p, index)


@pytest.mark.parametrize("max_p", [0, 32769, -5])
def test_assigner_validates_max_parallelism(max_p: int) -> None:
    with pytest.raises(ConfigError, match="max parallelism"):
        KeyGroupAssigner(max_p)
    with pytest.raises(ConfigError, match="max parallelism"):
        key_group_for("k", max_p)
