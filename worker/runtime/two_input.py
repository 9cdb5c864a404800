"""Which operator runs a transformation of a two-input pipeline (``Kind.TAG``, ``Kind.CO_PROCESS``).

Called by ``task`` when it builds its chain; the operators are in ``co_operators.py``,
``broadcast_operators.py`` and ``join_operators.py``.
"""

from __future__ import annotations

from streamjob.worker.graph.transformations import Kind
from streamjob.worker.runtime.broadcast_operators import BroadcastOperator
from streamjob.worker.runtime.co_operators import CoProcessOperator, TagOperator
from streamjob.worker.runtime.join_operators import IntervalJoinOperator
from streamjob.worker.runtime.operators import OperatorSetup, StreamOperator

TWO_INPUT_KINDS = frozenset({Kind.TAG, Kind.CO_PROCESS})
"""The transformation kinds ``create_two_input_operator`` builds."""


def create_two_input_operator(setup: OperatorSetup) -> StreamOperator:
    """The operator of a ``TWO_INPUT_KINDS`` transformation."""
    t = setup.transformation
    if t.kind is Kind.TAG:
        return TagOperator(setup)
    co_kind = t.options["co_kind"]
    if co_kind == "broadcast":
        return BroadcastOperator(setup)
    if co_kind == "interval_join":
        return IntervalJoinOperator(setup)
    return CoProcessOperator(setup)


__all__ = ["TWO_INPUT_KINDS", "create_two_input_operator"]
