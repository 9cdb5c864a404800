"""Pipeline -> job graph (``streamjob.worker.graph.job_graph``): chaining, parallelism, uids, partitioning."""

from __future__ import annotations

from typing import Any

import pytest

from streamjob.worker.api import StreamExecutionEnvironment
from streamjob.worker.api.sinks import DiscardingSink
from streamjob.worker.errors import ConfigError, PipelineError
from streamjob.worker.graph.job_graph import JobGraph, build_job_graph
from streamjob.worker.graph.transformations import Kind, Partitioning

pytestmark = pytest.mark.unit


def graph(env: StreamExecutionEnvironment, override: int | None = None) -> JobGraph:
    return build_job_graph(
        env.transformations,
        default_parallelism=env.parallelism,
        max_parallelism=env.max_parallelism,
        parallelism_override=override,
    )


def chains(g: JobGraph) -> list[list[str]]:
    return [[op.kind.value for op in v.operators] for v in g.vertices]


def edges(g: JobGraph) -> list[tuple[str, str, Partitioning]]:
    return [(e.source, e.target, e.partitioning) for v in g.vertices for e in v.inputs]


def env_of(parallelism: int = 2) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(parallelism)
    return env


def key(x: Any) -> Any:
    return x % 3


# -- chaining ---------------------------------------------------------------------------------------


def test_forward_operators_of_equal_parallelism_chain_into_one_task() -> None:
    env = env_of()
    env.from_sequence(1, 10).uid("src").map(lambda x: x).filter(bool).add_sink(DiscardingSink()).uid("sink")
    g = graph(env)
    assert chains(g) == [["source", "map", "filter", "sink"]]
    assert g.vertices[0].id == "src"
    assert g.vertices[0].is_source
    assert g.slots == 2


def test_key_by_breaks_the_chain_with_a_hash_edge_and_the_keyed_operator_chains_its_sink() -> None:
    env = env_of()
    env.from_sequence(1, 10).uid("src").key_by(key).reduce(lambda a, b: a + b).uid("sums").add_sink(
        DiscardingSink()
    ).uid("sink")
    g = graph(env)
    assert chains(g) == [["source"], ["reduce", "sink"]]
    assert edges(g) == [("src", "sums", Partitioning.HASH)]
    assert g.vertices[1].inputs[0].key_selector is key
    assert g.vertices[1].head.keyed


def test_rebalance_breaks_the_chain_even_at_equal_parallelism() -> None:
    env = env_of()
    env.from_sequence(1, 10).uid("src").rebalance().map(str).uid("m").add_sink(DiscardingSink()).uid("sink")
    g = graph(env)
    assert chains(g) == [["source"], ["map", "sink"]]
    assert edges(g) == [("src", "m", Partitioning.REBALANCE)]


def test_forward_between_different_parallelisms_becomes_rebalance() -> None:
    env = env_of(2)
    env.from_sequence(1, 10).uid("src").map(str).uid("m").set_parallelism(3).add_sink(DiscardingSink()).uid("sink")
    g = graph(env)
    assert chains(g) == [["source"], ["map"], ["sink"]]
    assert [v.parallelism for v in g.vertices] == [2, 3, 2]
    assert edges(g) == [("src", "m", Partitioning.REBALANCE), ("m", "sink", Partitioning.REBALANCE)]
    assert g.slots == 3


def test_a_stream_with_two_consumers_is_not_chained_into_either() -> None:
    env = env_of()
    source = env.from_sequence(1, 10).uid("src")
    source.map(str).uid("a").add_sink(DiscardingSink()).uid("sa")
    source.map(repr).uid("b").add_sink(DiscardingSink()).uid("sb")
    g = graph(env)
    assert chains(g) == [["source"], ["map", "sink"], ["map", "sink"]]
    assert edges(g) == [("src", "a", Partitioning.FORWARD), ("src", "b", Partitioning.FORWARD)]
    assert [e.target for e in g.vertex("src").outputs] == ["a", "b"]


def test_union_is_a_vertex_with_one_input_edge_per_stream() -> None:
    env = env_of()
    a = env.from_sequence(1, 5).uid("a")
    c = env.from_sequence(6, 9).uid("c")
    a.union(c).uid("u").add_sink(DiscardingSink()).uid("sink")
    g = graph(env)
    assert chains(g) == [["source"], ["source"], ["map", "sink"]]
    assert [(e.source, e.index) for e in g.vertex("u").inputs] == [("a", 0), ("c", 1)]


def test_sources_never_chain_behind_another_operator() -> None:
    env = env_of()
    env.from_sequence(1, 5).uid("s1").add_sink(DiscardingSink()).uid("k1")
    env.from_sequence(1, 5).uid("s2").add_sink(DiscardingSink()).uid("k2")
    assert chains(graph(env)) == [["source", "sink"], ["source", "sink"]]


# -- parallelism -------------------------------------------------------------------------------------


def test_override_replaces_the_default_but_not_an_operators_own_parallelism() -> None:
    env = env_of(2)
    env.from_sequence(1, 10).uid("src").key_by(key).reduce(lambda a, b: a + b).uid("sums").set_parallelism(4).add_sink(
        DiscardingSink()
    ).uid("sink")
    g = graph(env, override=3)
    assert {v.id: v.parallelism for v in g.vertices} == {"src": 3, "sums": 4, "sink": 3}


def test_non_parallel_sources_stay_at_parallelism_one_under_an_override() -> None:
    env = env_of(2)
    env.from_collection([1, 2, 3]).uid("src").map(str).uid("m").add_sink(DiscardingSink()).uid("sink")
    g = graph(env, override=3)
    assert [(v.id, v.parallelism) for v in g.vertices] == [("src", 1), ("m", 3)]
    assert edges(g) == [("src", "m", Partitioning.REBALANCE)]


def test_non_parallel_source_refuses_a_higher_parallelism() -> None:
    env = env_of()
    with pytest.raises(ConfigError, match="non-parallel"):
        env.from_collection([1]).set_parallelism(2)


def test_parallelism_above_max_parallelism_names_the_operator() -> None:
    env = env_of(2)
    env.set_max_parallelism(4)
    env.from_sequence(1, 10).uid("src").map(str).uid("wide").set_parallelism(8).add_sink(DiscardingSink())
    with pytest.raises(PipelineError, match=r"'Map' \(wide\) has parallelism 8 above its max parallelism 4"):
        graph(env)


def test_max_parallelism_is_carried_to_every_vertex() -> None:
    env = env_of()
    env.set_max_parallelism(16)
    env.from_sequence(1, 10).uid("src").key_by(key).reduce(lambda a, b: a).uid("r").add_sink(DiscardingSink())
    g = graph(env)
    assert g.max_parallelism == 16
    assert {v.max_parallelism for v in g.vertices} == {16}


# -- uids and validation ---------------------------------------------------------------------------------


def test_duplicate_uid_is_refused_naming_both_operators() -> None:
    env = env_of()
    env.from_sequence(1, 10).uid("same").map(str).name("Formatter").uid("same").add_sink(DiscardingSink())
    with pytest.raises(PipelineError, match=r"uid 'same' is used by both 'Sequence Source' and 'Formatter'"):
        graph(env)


def test_empty_uid_is_refused() -> None:
    env = env_of()
    with pytest.raises(ConfigError, match="uid must be a non-empty string"):
        env.from_sequence(1, 10).uid("")


def test_operators_without_uid_get_stable_derived_uids() -> None:
    def build() -> JobGraph:
        env = env_of()
        env.from_sequence(1, 10).key_by(key).reduce(lambda a, b: a + b).add_sink(DiscardingSink())
        return graph(env)

    first, second = build(), build()
    assert [v.id for v in first.vertices] == ["source-1", "reduce-2"]
    assert first.fingerprint() == second.fingerprint()
    assert set(first.operator_uids()) == {"source-1", "reduce-2", "sink-3"}


def test_fingerprint_changes_with_parallelism_and_uids() -> None:
    def build(parallelism: int, uid: str) -> str:
        env = env_of(parallelism)
        env.from_sequence(1, 10).uid("src").key_by(key).reduce(lambda a, b: a).uid(uid).add_sink(DiscardingSink())
        return graph(env).fingerprint()

    assert build(2, "r") == build(2, "r")
    assert build(2, "r") != build(3, "r")
    assert build(2, "r") != build(2, "other")


def test_pipeline_without_sink_or_source_is_refused() -> None:
    env = env_of()
    env.from_sequence(1, 10).map(str)
    with pytest.raises(PipelineError, match="no sink"):
        graph(env)
    with pytest.raises(PipelineError, match="empty"):
        graph(env_of())


def test_a_file_sink_is_a_two_phase_commit_sink_under_its_uid() -> None:
    from streamjob.worker.api.file_sink import FileSink

    env = env_of()
    env.from_sequence(1, 10).uid("src").map(str).uid("plain").key_by(len).map(str).uid("keyed").add_sink(
        FileSink("file:///tmp/streamjob-unit-never-written")
    ).uid("txn")
    g = graph(env)
    assert g.operator_uids()["txn"][1].kind is Kind.TWO_PHASE_SINK
