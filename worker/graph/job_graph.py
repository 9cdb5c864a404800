"""Pipeline -> job graph: resolve parallelism, validate uids, chain forward-connected operators.

Pure: called by the JobMaster (to schedule and to map snapshot state to operators) and by every
worker (which rebuilds the same graph from the same entrypoint, so user code is never shipped or
unpickled). The graph's ``fingerprint`` lets a worker check it built what the JobMaster built.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from streamjob.worker.errors import PipelineError
from streamjob.worker.graph.slot_groups import DEFAULT_GROUP, resolve_groups, slot_offsets
from streamjob.worker.graph.transformations import Kind, Partitioning, Transformation


@dataclass(frozen=True)
class JobEdge:
    """Records from every subtask of ``source`` to ``target`` vertex, partitioned as given."""

    source: str
    target: str
    partitioning: Partitioning
    key_selector: Any
    index: int  # position among the target vertex's input edges
    tag: str | None = None  # a side output's name: the edge carries those records instead of the main output


@dataclass(eq=False)
class JobVertex:
    """A chain of operators that runs as one task per parallel subtask."""

    id: str
    operators: list[Transformation]
    parallelism: int
    max_parallelism: int
    inputs: list[JobEdge] = field(default_factory=list)
    outputs: list[JobEdge] = field(default_factory=list)
    slot_group: str = DEFAULT_GROUP
    """The slot sharing group of its operators (``graph/slot_groups.py``)."""

    @property
    def name(self) -> str:
        """A display name: the operators' names joined."""
        return " -> ".join(op.name for op in self.operators)

    @property
    def is_source(self) -> bool:
        """Whether the head operator is a source (barriers are injected here)."""
        return self.operators[0].kind in (Kind.SOURCE, Kind.LEGACY_SOURCE)

    @property
    def head(self) -> Transformation:
        """The first operator of the chain."""
        return self.operators[0]


@dataclass
class JobGraph:
    """The vertices in topological order, with the job-wide max parallelism."""

    vertices: list[JobVertex]
    max_parallelism: int
    _offsets: dict[str, int] = field(init=False, repr=False, compare=False)
    _slots: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._offsets, self._slots = slot_offsets((v.slot_group, v.parallelism) for v in self.vertices)

    def vertex(self, vertex_id: str) -> JobVertex:
        """The vertex with this id."""
        for v in self.vertices:
            if v.id == vertex_id:
                return v
        raise KeyError(vertex_id)

    @property
    def slots(self) -> int:
        """Slots the job needs: per slot sharing group its largest parallelism, summed over the groups."""
        return self._slots

    @property
    def parallelism(self) -> int:
        """The largest vertex parallelism (what ``--parallelism`` and a rescale set), not the slot count."""
        return max(v.parallelism for v in self.vertices)

    def slot_of(self, vertex_id: str, subtask: int) -> int:
        """The slot that runs ``subtask`` of the vertex: its group's first slot plus the subtask index."""
        return self._offsets[self.vertex(vertex_id).slot_group] + subtask

    def operator_uids(self) -> dict[str, tuple[JobVertex, Transformation]]:
        """Every operator by uid, with its vertex."""
        return {op.effective_uid(): (v, op) for v in self.vertices for op in v.operators}

    def subtasks(self) -> list[tuple[str, int]]:
        """Every (vertex id, subtask index) of the job."""
        return [(v.id, i) for v in self.vertices for i in range(v.parallelism)]

    def fingerprint(self) -> str:
        """A digest of the topology, parallelism and slot sharing groups (not of the user code)."""
        h = hashlib.sha256()
        for v in self.vertices:
            ops = ",".join(f"{op.effective_uid()}:{op.kind.value}" for op in v.operators)
            ins = ",".join(f"{e.source}/{e.partitioning.value}" + (f"#{e.tag}" if e.tag else "") for e in v.inputs)
            group = "" if v.slot_group == DEFAULT_GROUP else f"|@{v.slot_group}"
            h.update(f"{v.id}|{v.parallelism}|{v.max_parallelism}|{ops}|{ins}{group};".encode())
        return h.hexdigest()[:16]


def _resolve_parallelism(t: Transformation, default: int, override: int | None) -> int:
    if t.max_parallelism == 1:
        return 1
    if t.parallelism is not None:
        return t.parallelism
    return override or default


def build_job_graph(
    transformations: list[Transformation],
    *,
    default_parallelism: int,
    max_parallelism: int,
    parallelism_override: int | None = None,
) -> JobGraph:
    """Chains and validates a pipeline; raises ``PipelineError`` with the fix on a bad pipeline.

    ``parallelism_override`` (``--parallelism`` or the StreamJob spec) replaces the default
    parallelism of every operator that did not set its own.
    """
    if not transformations:
        raise PipelineError("the pipeline is empty: add a source (env.from_collection, env.add_source, ...)")
    read = {e.source_id for t in transformations for e in t.inputs}
    # An event-time map's "unstamp" companion (api/stamped.py) exists only where something reads it.
    transformations = [t for t in transformations if t.id in read or t.options.get("stamp") != "unstamp"]
    by_id = {t.id: t for t in transformations}
    _check_uids(transformations)
    consumers: dict[int, list[Transformation]] = {t.id: [] for t in transformations}
    for t in transformations:
        for e in t.inputs:
            consumers[e.source_id].append(t)
    if not any(t.kind in (Kind.SINK, Kind.TWO_PHASE_SINK) for t in transformations):
        raise PipelineError("the pipeline has no sink: end it with .print(), .add_sink(...) or .sink_to(...)")

    par: dict[int, int] = {}
    for t in transformations:
        # A two-input operator's tag runs with its input, so that it chains to it (api/connected.py); so
        # does a stamped stream's unstamp companion (api/stamped.py).
        tagged = t.kind is Kind.TAG or t.options.get("stamp") == "unstamp"
        par[t.id] = (
            par[t.inputs[0].source_id] if tagged else _resolve_parallelism(t, default_parallelism, parallelism_override)
        )
    for t in transformations:
        mp = t.max_parallelism or max_parallelism
        if par[t.id] > mp:
            raise PipelineError(
                f"operator '{t.name}' ({t.effective_uid()}) has parallelism {par[t.id]} above "
                f"its max parallelism {mp}; raise set_max_parallelism or lower the parallelism"
            )

    group = resolve_groups(transformations)
    vertex_of: dict[int, JobVertex] = {}
    vertices: list[JobVertex] = []
    for t in transformations:
        upstream = by_id[t.inputs[0].source_id] if len(t.inputs) == 1 else None
        if (
            upstream is not None
            and t.inputs[0].partitioning is Partitioning.FORWARD
            and t.inputs[0].tag is None  # a side output leaves its producer's task: the producer is a tail
            and par[upstream.id] == par[t.id]
            and group[upstream.id] == group[t.id]
            and len(consumers[upstream.id]) == 1
            and t.kind not in (Kind.SOURCE, Kind.LEGACY_SOURCE)
        ):
            vertex = vertex_of[upstream.id]
            vertex.operators.append(t)
            vertex_of[t.id] = vertex
            continue
        mp = t.max_parallelism if t.max_parallelism and t.max_parallelism > 1 else max_parallelism
        vertex = JobVertex(
            id=t.effective_uid(), operators=[t], parallelism=par[t.id], max_parallelism=mp, slot_group=group[t.id]
        )
        vertex_of[t.id] = vertex
        vertices.append(vertex)
        for index, e in enumerate(t.inputs):
            source_vertex = vertex_of[e.source_id]
            partitioning = e.partitioning
            if partitioning is Partitioning.FORWARD and source_vertex.parallelism != vertex.parallelism:
                partitioning = Partitioning.REBALANCE
            edge = JobEdge(source_vertex.id, vertex.id, partitioning, e.key_selector, index, e.tag)
            vertex.inputs.append(edge)
            source_vertex.outputs.append(edge)
    return JobGraph(vertices, max_parallelism)


def _check_uids(transformations: list[Transformation]) -> None:
    seen: dict[str, Transformation] = {}
    for t in transformations:
        uid = t.effective_uid()
        if uid in seen:
            raise PipelineError(
                f"uid '{uid}' is used by both '{seen[uid].name}' and '{t.name}'; every operator needs its own uid"
            )
        seen[uid] = t
