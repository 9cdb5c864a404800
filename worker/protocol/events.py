"""In-band events that travel between tasks with the records: barriers and end of stream.

The runtime's own types (the channels and barrier state machines compare them by identity and
type on every item); how they cross a process boundary is declared once, in ``messages``
(``BarrierSpec`` for both the JobMaster's trigger and the data plane's EVENT frames). Used by
``runtime`` (channels, tasks, barrier handling), the checkpoint coordinator and the protocol.
"""

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


@dataclass(frozen=True)
class EndOfStream:
    """The producer of this channel will send nothing more (its source finished)."""


END_OF_STREAM = EndOfStream()
