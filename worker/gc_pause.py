"""The garbage collector held off while a ``streamjob`` process starts (``cli.main``).

A start imports some hundreds of modules (pydantic and its models, the API, asyncio, the JobMaster or
the runtime); the collector runs every few hundred of their allocations and finds almost nothing to
free: about a tenth of the start's CPU. ``cli.main`` pauses it first thing; once the process is up
(``local._run`` before the JobMaster runs, the slot's ``_tune_interpreter``, ``streamjob jobmaster``
before its event loop) ``resume`` freezes what the start allocated (a collection never walks those
objects again; forked slots share them) and turns it back on. ``end`` undoes both when ``main``
returns, so that a caller of ``main`` in a long-lived process (a test) gets its collector back as it
was. A process that never paused (a library user, a test calling ``run_local``) is left alone.
"""

from __future__ import annotations

import gc

_paused = False
_frozen = False


def pause() -> None:
    """Turns the collector off for a start, unless it already is (then ``resume`` leaves it off)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume() -> None:
    """The start is over: freezes the objects it allocated and turns the collector back on (once)."""
    global _paused, _frozen
    if _paused:
        gc.freeze()
        gc.enable()
        _paused, _frozen = False, True


def end() -> None:
    """``main`` returns: the collector on again and the start's objects collectable again."""
    global _frozen
    resume()
    if _frozen:
        gc.unfreeze()
        _frozen = False
