"""Per-split watermarks of one source reader: a generator per split, the output the minimum over them.

Semantics as Flink's source watermarks (``WatermarkOutputMultiplexer``) document them:

- each split the reader owns and has not finished gets its own watermark generator, created when the
  split is first seen; records advance their split's generator only, so one fast partition no longer
  moves the source's watermark past another partition's records;
- the source's watermark is the minimum over its splits that are not idle (``with_idleness``), and is
  emitted only when it grows: a split that comes back from idleness behind the others holds the output
  until it caught up, it never moves it back;
- a finished split is released: it no longer holds the watermark back;
- every split idle (or, with idleness, no split at all) makes the source idle.

Each split's watermark is stored in the checkpoint by split id (``snapshot``) and is the floor of that
split's generator after a restore, at any parallelism: a split moved to another subtask by a rescale
keeps its event-time progress. A reader without split ids (``SourceReader.poll_splits``'s default) is
one split, ``READER_SPLIT``; its floor after a rescale is the smallest any old subtask stored.
Pure apart from the clock the idleness timeout reads. Callers: ``runtime/source_operators.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from streamjob.worker.api.watermarks import MIN_WATERMARK, IdlenessTracker, WatermarkGenerator, WatermarkStrategy


def split_key(split: Any) -> Any:
    """A split id as a dict key: lists (a tuple after a round trip through state) become tuples."""
    return tuple(split_key(s) for s in split) if isinstance(split, list | tuple) else split


class SplitWatermarks:
    """The watermark generators of one reader's splits and their combined watermark."""

    __slots__ = ("_clock", "_floors", "_generators", "_idleness", "_out", "_strategy", "_timestamp_of")

    def __init__(
        self,
        strategy: WatermarkStrategy,
        restored: Iterable[Any] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._strategy = strategy
        self._timestamp_of = strategy.record_timestamp_function()
        self._clock = clock
        self._idleness = strategy.idle_timeout_ms is not None
        self._generators: dict[Any, WatermarkGenerator] = {}
        self._floors: dict[Any, int] = {}
        for split, watermark in restored:
            key, wm = split_key(split), int(watermark)
            old = self._floors.get(key)
            # A split is in one old subtask's state; the reader's own pseudo split in each: keep the smallest.
            self._floors[key] = wm if old is None else min(old, wm)
        self._out = MIN_WATERMARK

    def on_records(self, split: Any, records: list[Any]) -> None:
        """Records of ``split`` were read: its generator sees their timestamps."""
        generator = self._generators.get(split)
        if generator is None:
            generator = self._add(split)
        on_event, timestamp_of = generator.on_event, self._timestamp_of
        for r in records:
            on_event(timestamp_of(r))

    def sync(self, active: Iterable[Any]) -> None:
        """The reader's unfinished splits: new ones get a generator (holding the output back), finished ones go."""
        current = set(active)
        for split in current:
            if split not in self._generators:
                self._add(split)
        for split in [s for s in self._generators if s not in current]:
            del self._generators[split]
            self._floors.pop(split, None)

    def _add(self, split: Any) -> WatermarkGenerator:
        generator = self._strategy.create_generator(self._clock)
        self._generators[split] = generator
        return generator

    def _split_watermark(self, split: Any, generator: WatermarkGenerator) -> int:
        return max(self._floors.get(split, MIN_WATERMARK), generator.current_watermark())

    def current(self) -> int:
        """The source's watermark now (the minimum over the splits not idle; it never goes back)."""
        lowest: int | None = None
        idleness = self._idleness
        for split, generator in self._generators.items():
            if idleness and isinstance(generator, IdlenessTracker) and generator.is_idle():
                continue
            wm = self._split_watermark(split, generator)
            if lowest is None or wm < lowest:
                lowest = wm
        if lowest is not None and lowest > self._out:
            self._out = lowest
        return self._out

    def is_idle(self) -> bool:
        """With ``with_idleness``: every split idle (or none left); never without it."""
        if not self._idleness:
            return False
        return all(isinstance(g, IdlenessTracker) and g.is_idle() for g in self._generators.values())

    def snapshot(self) -> list[tuple[Any, int]]:
        """Each split's watermark, for the checkpoint."""
        return [(split, self._split_watermark(split, g)) for split, g in self._generators.items()]


__all__ = ["SplitWatermarks", "split_key"]
