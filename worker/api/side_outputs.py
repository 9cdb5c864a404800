"""``OutputTag``: names a side output of a process function or window (Flink's ``OutputTag``).

A function emits to a side output with ``ctx.output(tag, value)``; the stream it returned gives the
side output's records with ``get_side_output(tag)``, a stream like any other (keyed, mapped, sunk,
sent across the network). Records emitted to a tag no stream reads are dropped, as in Flink.
Callers: job code, ``DataStream.get_side_output`` and ``WindowedStream.side_output_late_data``,
the runtime's contexts (``runtime/context.py``) that check the tag.
"""

from __future__ import annotations

from typing import Any

from streamjob.worker.errors import ConfigError, PipelineError


class OutputTag:
    """The name (and, for documentation, the type) of a side output; equal names are the same output."""

    __slots__ = ("name", "type_info")

    def __init__(self, name: str, type_info: Any = None) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"OutputTag needs a non-empty name, e.g. OutputTag('late-data'); got {name!r}")
        self.name = name
        self.type_info = type_info

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OutputTag) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("OutputTag", self.name))

    def __repr__(self) -> str:
        return f"OutputTag({self.name!r})"


def tag_name(tag: Any, where: str) -> str:
    """``tag``'s name, or a ``ConfigError`` naming ``where`` it was passed."""
    if not isinstance(tag, OutputTag):
        raise ConfigError(f"{where} takes an OutputTag (OutputTag('name')), got {type(tag).__name__}")
    return tag.name


def emit_side_output(side_outputs: dict[str, list[Any]], tag: Any, value: Any) -> None:
    """``ctx.output``: appends ``value`` to ``tag``'s buffer when a stream reads that tag (the task fills the keys)."""
    buffer = side_outputs.get(tag.name) if isinstance(tag, OutputTag) else None
    if buffer is not None:
        buffer.append(value)
    elif not isinstance(tag, OutputTag):
        raise PipelineError(f"ctx.output takes an OutputTag (OutputTag('name')) and a value, got {type(tag).__name__}")


__all__ = ["OutputTag", "emit_side_output", "tag_name"]
