"""Async I/O: ``AsyncDataStream.ordered_wait`` / ``unordered_wait`` and the ``AsyncFunction`` contract.

Flink's async I/O in Python style: a job enriches records from an external service without
waiting for each answer in turn. ``AsyncFunction.async_invoke`` is an ``async def`` that returns
the record's results as a collection (an empty one for none); it runs as a coroutine on the
task's event loop, so up to ``capacity`` requests are in flight at once and the task goes on with
other records meanwhile. The runtime side is ``runtime/async_wait.py``.

Recovery contract (as Flink's AsyncWaitOperator): the records whose results were not emitted yet
are part of every checkpoint (operator list state, redistributed on rescale) and are invoked
again after a restore; together with a two-phase-commit sink the output is exactly-once, while
the external service may see a request twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import Any, Generic, TypeVar

from streamjob.worker.api.datastream import DataStream
from streamjob.worker.api.functions import RichFunction
from streamjob.worker.errors import ConfigError, StreamJobError
from streamjob.worker.graph.transformations import Kind

IN = TypeVar("IN")
OUT = TypeVar("OUT")

DEFAULT_CAPACITY = 100


class AsyncTimeoutError(StreamJobError):
    """An async request outlived its timeout and the function has no ``timeout`` handler: the job fails."""


class AsyncFunction(RichFunction, Generic[IN, OUT]):
    """A function whose work per record is a coroutine (an HTTP call, a database query).

    ``async_invoke`` returns the record's results (a list, a tuple, any iterable; empty: no
    output); raising fails the job, as a ``ResultFuture`` completed exceptionally does in Flink.
    ``timeout`` is called instead when a request outlived the operator's timeout (the request is
    cancelled first); by default it fails the job with ``AsyncTimeoutError``. ``open`` and ``close``
    run on the task's event loop, so a client session may be created in ``open``.
    """

    async def async_invoke(self, value: IN) -> Iterable[OUT]:
        """The results for ``value``; runs concurrently with other records' requests."""
        raise NotImplementedError(f"{type(self).__name__} must define async def async_invoke(self, value)")

    def timeout(self, value: IN) -> Iterable[OUT] | Awaitable[Iterable[OUT]]:
        """The results for a timed-out ``value`` (may be ``async def``); the default fails the job."""
        raise AsyncTimeoutError(
            f"{type(self).__name__}.async_invoke({_short(value)}) did not finish within the async timeout: "
            "raise the timeout of AsyncDataStream.*_wait, or define timeout(self, value) on the function "
            "to emit a fallback result"
        )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _checked(function: Any, timeout_ms: Any, capacity: Any) -> None:
    if not isinstance(function, AsyncFunction):
        raise ConfigError(
            f"AsyncDataStream takes an AsyncFunction (subclass it and define async def async_invoke), "
            f"got {type(function).__name__}"
        )
    if type(function).async_invoke is AsyncFunction.async_invoke:
        raise ConfigError(f"{type(function).__name__} must define async def async_invoke(self, value)")
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int | float) or timeout_ms <= 0:
        raise ConfigError(f"the async timeout takes milliseconds > 0 (Time.seconds(5)), got {timeout_ms!r}")
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ConfigError(f"the async capacity takes an integer >= 1 (requests in flight), got {capacity!r}")


class AsyncDataStream:
    """Applies an ``AsyncFunction`` to a stream (Flink's ``AsyncDataStream``)."""

    @staticmethod
    def ordered_wait(
        stream: DataStream,
        function: AsyncFunction[Any, Any],
        timeout_ms: int,
        capacity: int = DEFAULT_CAPACITY,
    ) -> DataStream:
        """Results in the order of the input records (a slow request holds back the later ones)."""
        return _wait(stream, function, timeout_ms, capacity, ordered=True)

    @staticmethod
    def unordered_wait(
        stream: DataStream,
        function: AsyncFunction[Any, Any],
        timeout_ms: int,
        capacity: int = DEFAULT_CAPACITY,
    ) -> DataStream:
        """Results as requests complete, never across a watermark (they keep their side of every watermark)."""
        return _wait(stream, function, timeout_ms, capacity, ordered=False)


def _wait(stream: DataStream, function: Any, timeout_ms: Any, capacity: Any, *, ordered: bool) -> DataStream:
    _checked(function, timeout_ms, capacity)
    # DataStream._then, also on a keyed stream: the records are partitioned by key, but the
    # operator holds no keyed state (as in Flink, an async function has none).
    return DataStream._then(
        stream,
        Kind.ASYNC_WAIT,
        "AsyncWait" if ordered else "UnorderedAsyncWait",
        function,
        async_ordered=ordered,
        async_timeout_s=timeout_ms / 1000,
        async_capacity=capacity,
    )
