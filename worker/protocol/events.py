"""In-band events that travel between tasks with the records: barriers, watermarks and end of stream.

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


@dataclass(frozen=True)
class Watermark:
    """Event time has reached ``timestamp_ms`` on this channel: no record older than it should follow.

    Sent by a task when its watermark grows (``runtime/watermarks.py`` takes the minimum over a
    task's input channels); a bounded input ends with the maximum watermark, so every event-time
    window and timer fires before the job finishes.
    """

    timestamp_ms: int


@dataclass(frozen=True)
class WatermarkStatus:
    """The channel's producer became idle (no records for its idleness timeout) or active again."""

    idle: bool


StreamEvent = Barrier | EndOfStream | Watermark | WatermarkStatus
"""Everything but record batches that travels in a channel."""
