"""Slot sharing groups (``graph/slot_groups.py``, ``JobGraph.slot_of``, ``DataStream.slot_sharing_group``).

Flink's rules: a group is inherited from the inputs when they share one, else ``"default"``; groups
never chain; each group takes its largest parallelism in slots. A job without groups keeps its
placement (subtask i in slot i) and slot count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamjob.worker.api import StreamExecutionEnvironment
from streamjob.worker.api.sinks import DiscardingSink
from streamjob.worker.checkpoint.restore import SubtaskRestorePlan
from streamjob.worker.config import CheckpointSettings, parse_job_config
from streamjob.worker.errors import ConfigError
from streamjob.worker.graph.job_graph import JobGraph, build_job_graph
from streamjob.worker.jobmaster.deployment import DeploySpec, deploy_messages
from streamjob.worker.jobmaster.plan import resolve_plan
from streamjob.worker.jobmaster.rescale import rescaled_plan
from streamjob.worker.loader import load_job
from streamjob.worker.testing import TestingSink, TestingSource, run_in_process

pytestmark = pytest.mark.unit

USER_FN = Path(__file__).resolve().parents[2] / "bench" / "jobs" / "user_fn.py"


def graph(env: StreamExecutionEnvironment, override: int | None = None) -> JobGraph:
    return build_job_graph(
        env.transformations,
        default_parallelism=env.parallelism,
        max_parallelism=env.max_parallelism,
        parallelism_override=override,
    )


def env_of(parallelism: int = 1) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(parallelism)
    return env


def key(x: Any) -> Any:
    return x % 3


def user_fn_shape(env: StreamExecutionEnvironment, group: str | None) -> None:
    """source → map → key_by → process → sink, the process (and so the sink) in ``group``."""
    parsed = env.from_sequence(1, 10).uid("src").map(lambda x: x).uid("parse")
    totals = parsed.key_by(key).reduce(lambda a, b: a + b).uid("totals")
    if group is not None:
        totals.slot_sharing_group(group)
    totals.add_sink(DiscardingSink()).uid("sink")


def groups(g: JobGraph) -> dict[str, str]:
    return {v.id: v.slot_group for v in g.vertices}


def test_operators_inherit_their_inputs_group_and_sources_start_in_default() -> None:
    env = env_of()
    user_fn_shape(env, "keyed")
    g = graph(env)
    assert groups(g) == {"src": "default", "totals": "keyed"}
    assert [[op.effective_uid() for op in v.operators] for v in g.vertices] == [["src", "parse"], ["totals", "sink"]]


def test_inputs_of_different_groups_give_default_unless_named() -> None:
    env = env_of()
    a = env.from_sequence(1, 5).uid("a").slot_sharing_group("ga")
    b = env.from_sequence(1, 5).uid("b").slot_sharing_group("gb")
    a.union(b).map(lambda x: x).uid("both").add_sink(DiscardingSink()).uid("sink")
    b.map(lambda x: x).uid("after_b").add_sink(DiscardingSink()).uid("sink_b")
    g = graph(env)
    union = next(v for v in g.vertices if len(v.inputs) == 2)
    assert [op.effective_uid() for op in union.operators][1:] == ["both", "sink"]
    assert union.slot_group == "default"
    assert groups(g)["after_b"] == "gb"
    assert g.slots == 3  # ga, gb, default: one slot each at p=1


def test_a_group_change_breaks_a_forward_chain() -> None:
    env = env_of(2)
    s = env.from_sequence(1, 10).uid("src").map(lambda x: x).uid("m1")
    s.map(lambda x: x).uid("m2").slot_sharing_group("other").add_sink(DiscardingSink()).uid("sink")
    g = graph(env)
    assert [[op.effective_uid() for op in v.operators] for v in g.vertices] == [["src", "m1"], ["m2", "sink"]]
    edge = g.vertex("m2").inputs[0]
    assert edge.source == "src" and edge.partitioning.value == "forward"  # same parallelism: still forward


def test_slots_are_summed_over_groups_of_their_largest_parallelism_and_slot_of_offsets_by_group() -> None:
    env = env_of(2)
    src = env.from_sequence(1, 10).uid("src")
    out = src.key_by(key).reduce(lambda a, b: a + b).uid("sums").slot_sharing_group("keyed").set_parallelism(3)
    out.add_sink(DiscardingSink()).uid("sink").set_parallelism(1)
    g = graph(env)
    assert groups(g) == {"src": "default", "sums": "keyed", "sink": "keyed"}
    assert g.slots == 2 + 3 and g.parallelism == 3
    assert [g.slot_of("src", i) for i in range(2)] == [0, 1]
    assert [g.slot_of("sums", i) for i in range(3)] == [2, 3, 4]
    assert g.slot_of("sink", 0) == 2
    with pytest.raises(KeyError):
        g.slot_of("nope", 0)


def test_a_job_without_groups_keeps_its_placement_and_slot_count() -> None:
    for parallelism in (1, 3):
        env = env_of(parallelism)
        user_fn_shape(env, None)
        g = graph(env)
        assert g.slots == g.parallelism == parallelism
        assert all(g.slot_of(v.id, i) == i for v in g.vertices for i in range(v.parallelism))
        named = env_of(parallelism)
        user_fn_shape(named, "default")  # naming the default group changes nothing
        assert graph(named).fingerprint() == g.fingerprint()


def test_the_fingerprint_changes_with_the_groups() -> None:
    prints = set()
    for group in (None, "keyed", "other"):
        env = env_of()
        user_fn_shape(env, group)
        prints.add(graph(env).fingerprint())
    assert len(prints) == 3


@pytest.mark.parametrize("bad", ["", "   ", None, 3, ["keyed"]])
def test_a_bad_group_name_is_one_error_line_naming_the_method(bad: Any) -> None:
    env = env_of()
    stream = env.from_sequence(1, 3)
    with pytest.raises(ConfigError) as err:
        stream.slot_sharing_group(bad)
    assert "slot_sharing_group" in str(err.value) and "\n" not in str(err.value)
    assert stream.transformation.slot_sharing_group is None


def test_restore_plans_go_to_the_slot_that_runs_the_subtask() -> None:
    env = env_of(2)
    user_fn_shape(env, "keyed")
    g = graph(env)
    plans = {(v.id, i): SubtaskRestorePlan() for v in g.vertices for i in range(v.parallelism)}
    config = parse_job_config({"name": "j", "entrypoint": "x.py"}, source="(test)")
    spec = DeploySpec(1, "job", "t", config, CheckpointSettings(), "hashmap", False, 100, "f", "file:///c", None, None)
    addresses = {i: ("127.0.0.1", 1000 + i) for i in range(g.slots)}
    messages = deploy_messages(spec, addresses, plans, g.slot_of)
    assert {i: sorted(m.restore) for i, m in messages.items()} == {
        0: ["src/0"],
        1: ["src/1"],
        2: ["totals/0"],
        3: ["totals/1"],
    }


def test_a_rescale_asks_for_the_slots_of_the_groups(tmp_path: Path) -> None:
    loaded = load_job(str(USER_FN), ["--out", str(tmp_path), "--keyed-slot-group"])
    config = parse_job_config(
        {"name": "u", "entrypoint": str(USER_FN), "parallelism": 1, "checkpoints_uri": tmp_path.as_uri()},
        source="(test)",
    )
    plan = resolve_plan(config, loaded, default_checkpoints_uri=tmp_path.as_uri())
    assert (plan.graph.parallelism, plan.graph.slots) == (1, 2)
    up = rescaled_plan(plan, 2)
    assert (up.graph.parallelism, up.graph.slots, up.config.parallelism) == (2, 4, 2)
    assert up.config.workers * up.config.slots_per_worker >= 4


def test_in_process_a_job_in_two_groups_restarts_with_exact_output() -> None:
    """The test kit's slots (coroutines) follow ``slot_of`` as the processes do."""
    records = [(k, v) for v in range(1, 31) for k in ("a", "b", "c")]
    out: list[Any] = []
    env = StreamExecutionEnvironment.get_execution_environment()
    source = TestingSource([*records[:40], TestingSource.ABORT, *records[40:]])
    sums = env.from_source(source).key_by(lambda r: r[0]).reduce(lambda a, b: (a[0], a[1] + b[1])).uid("sums")
    sums.slot_sharing_group("keyed").add_sink(TestingSink(out)).uid("out")
    assert graph(env, 2).slots == 1 + 2  # the TestingSource runs at p=1, the keyed group at p=2
    result = run_in_process(env, parallelism=2)
    assert result.restarts == 1
    totals: dict[str, int] = {}
    want = []
    for k, v in records:
        totals[k] = totals.get(k, 0) + v
        want.append((k, totals[k]))
    assert sorted(tuple(r) for r in out) == sorted(want)  # nothing lost, nothing twice
