"""Barrier handling on a task's inputs: alignment, unaligned checkpoints, overtaking, in-flight capture.

``controller.InputBarriers`` is what the task uses; ``handlers`` holds the pure decision state
machines, ``overtaking`` the queue side of unaligned checkpoints and the aligned timeout,
``in_flight`` the captured records of one checkpoint.
"""

from streamjob.worker.runtime.barriers.controller import CheckpointTarget, InputBarriers
from streamjob.worker.runtime.barriers.handlers import AlignedBarrierHandler, AtLeastOnceBarrierTracker, BarrierHost
from streamjob.worker.runtime.barriers.in_flight import InFlightCapture
from streamjob.worker.runtime.barriers.overtaking import Overtaking

__all__ = [
    "AlignedBarrierHandler",
    "AtLeastOnceBarrierTracker",
    "BarrierHost",
    "CheckpointTarget",
    "InFlightCapture",
    "InputBarriers",
    "Overtaking",
]
