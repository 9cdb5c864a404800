"""Which subtasks a deployment connects (``streamjob.worker.graph.topology``), from a real job graph."""

from __future__ import annotations

import pytest

from streamjob.worker.api import StreamExecutionEnvironment
from streamjob.worker.api.sinks import DiscardingSink
from streamjob.worker.graph.job_graph import JobGraph, build_job_graph
from streamjob.worker.graph.topology import all_edges, consumers_of, producers_of
from streamjob.worker.graph.transformations import Partitioning

pytestmark = pytest.mark.unit


def _graph() -> JobGraph:
    """source (p=1) -rebalance-> map (p=3), which fans out (so nothing chains) -forward-> sink (p=3)
    and -hash-> map (p=2) -forward (chained)-> sink (p=2)."""
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(3)
    mapped = env.from_elements(1, 2, 3).map(str)
    mapped.add_sink(DiscardingSink())
    mapped.key_by(len).map(str).set_parallelism(2).add_sink(DiscardingSink()).set_parallelism(2)
    return build_job_graph(env.transformations, default_parallelism=3, max_parallelism=128)


def test_all_edges_lists_every_input_edge_in_vertex_order() -> None:
    g = _graph()
    edges = all_edges(g)
    assert edges == [e for v in g.vertices for e in v.inputs]
    assert len(edges) == sum(len(v.inputs) for v in g.vertices) >= 2
    assert all_edges(_graph()) == [e for v in _graph().vertices for e in v.inputs]  # the same order in every process


def test_forward_edges_connect_equal_indexes_and_others_connect_all() -> None:
    g = _graph()
    seen = set()
    for e in all_edges(g):
        sources, targets = g.vertex(e.source).parallelism, g.vertex(e.target).parallelism
        seen.add(e.partitioning)
        for consumer in range(targets):
            producers = producers_of(e, g, consumer)
            assert producers == ([consumer] if e.partitioning is Partitioning.FORWARD else list(range(sources)))
        for producer in range(sources):
            consumers = consumers_of(e, g, producer)
            assert consumers == ([producer] if e.partitioning is Partitioning.FORWARD else list(range(targets)))
            for consumer in consumers:  # both sides agree on every channel
                assert producer in producers_of(e, g, consumer)
    assert seen == {Partitioning.FORWARD, Partitioning.HASH, Partitioning.REBALANCE}
