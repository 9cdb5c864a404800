"""Which subtasks talk to which over an edge of the job graph: the channels a deployment wires up.

Pure functions of the job graph, used by the slot (``slot.py``) to build its input gates and record
writers; an edge's position in ``all_edges`` names its channels on the wire, so every slot must
compute the same order.
"""

from __future__ import annotations

from streamjob.worker.graph.job_graph import JobEdge, JobGraph
from streamjob.worker.graph.transformations import Partitioning


def all_edges(graph: JobGraph) -> list[JobEdge]:
    """Every edge in a fixed order; an edge's position names its channels on the wire."""
    return [e for v in graph.vertices for e in v.inputs]


def producers_of(edge: JobEdge, graph: JobGraph, consumer: int) -> list[int]:
    """Producer subtasks that send to ``consumer`` over ``edge``."""
    if edge.partitioning is Partitioning.FORWARD:
        return [consumer]
    return list(range(graph.vertex(edge.source).parallelism))


def consumers_of(edge: JobEdge, graph: JobGraph, producer: int) -> list[int]:
    """Consumer subtasks that ``producer`` sends to over ``edge``."""
    if edge.partitioning is Partitioning.FORWARD:
        return [producer]
    return list(range(graph.vertex(edge.target).parallelism))
