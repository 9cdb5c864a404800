"""A stand-in job module for the record codec's tests: record classes at top level and a ``build``.

``tests/unit/test_codec_attacks.py`` and the fuzz seeds (``tests/fuzz``) load it as the job, so its
top-level classes are the allowed ones and ``build`` is the function whose attributes the
reproduced exploit traversed (``build.__class__`` is FunctionType).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, NamedTuple

from streamjob.worker.api import StreamExecutionEnvironment


@dataclass(frozen=True)
class Click:
    user: str
    count: int


@dataclass(slots=True)
class Slotted:
    name: str
    tags: list[str]


class Plain:
    """A plain class (no dataclass): pickled as NEWOBJ + BUILD of its ``__dict__``."""

    def __init__(self, x: Any) -> None:
        self.x = x

    def __eq__(self, other: object) -> bool:
        return type(other) is Plain and other.x == self.x

    def __hash__(self) -> int:
        return hash(self.x)


class Color(enum.Enum):
    RED = 1
    GREEN = 2


class Point(NamedTuple):
    x: int
    y: int


class Registered:
    """Nested classes are allowed only when registered (their qualname has a dot)."""

    class Inner:
        def __init__(self, v: int) -> None:
            self.v = v

        def __eq__(self, other: object) -> bool:
            return type(other) is Registered.Inner and other.v == self.v

        def __hash__(self) -> int:
            return self.v


def build() -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.register_type(Registered.Inner)
    env.from_collection([Click("a", 1)]).print()
    return env
