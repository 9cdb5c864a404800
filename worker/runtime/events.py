"""In-band events that travel between tasks with the records: barriers and end of stream."""

from __future__ import annotations

from dataclasses import dataclass

from streamjob.worker.errors import SerializationError


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


def event_from_wire(data: object) -> Barrier | EndOfStream:
    """Rebuilds an event from ``to_wire`` output; SerializationError for anything else (a damaged frame)."""
    if isinstance(data, list | tuple) and len(data) == 1 and data[0] == "E":
        return END_OF_STREAM
    if isinstance(data, list | tuple) and len(data) == 6 and data[0] == "B":
        _, cid, ts, sp, stop, unaligned = data
        if type(cid) is int and type(ts) is int and (sp is None or isinstance(sp, str)):
            return Barrier(cid, ts, sp, bool(stop), bool(unaligned))
    raise SerializationError(f"a data connection sent a malformed event ({str(data)[:80]}); is the peer running "
                             "the same streamjob version?")
