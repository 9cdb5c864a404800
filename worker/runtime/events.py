"""In-band events that travel between tasks with the records: barriers and end of stream."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Barrier:
    """Checkpoint ``id``'s cut in the stream; everything before it belongs to the checkpoint."""

    id: int
    timestamp_ms: int
    savepoint_dir: str | None = None
    stop: bool = False
    unaligned: bool = False

    def to_wire(self) -> list[object]:
        """A msgpack-friendly form."""
        return ["B", self.id, self.timestamp_ms, self.savepoint_dir, self.stop, self.unaligned]


@dataclass(frozen=True)
class EndOfStream:
    """The producer of this channel will send nothing more (its source finished)."""

    def to_wire(self) -> list[object]:
        """A msgpack-friendly form."""
        return ["E"]


END_OF_STREAM = EndOfStream()


def event_from_wire(data: list[object]) -> Barrier | EndOfStream:
    """Rebuilds an event from ``to_wire`` output."""
    if data[0] == "B":
        _, cid, ts, sp, stop, unaligned = data
        return Barrier(int(cid), int(ts), sp if isinstance(sp, str) else None, bool(stop), bool(unaligned))  # type: ignore[call-overload]
    return END_OF_STREAM
