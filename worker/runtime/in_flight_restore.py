"""Reading the in-flight records an unaligned checkpoint persisted, for the slot that replays them.

Called by ``slot.py`` while it prepares a restored task. The files are checked (size, sha256) by the
reader; records that do not decode make the restore point corrupt (``CorruptStateError``): the
next attempt would read the same bytes, so the job fails at once instead of restarting.
"""

from __future__ import annotations

from typing import Any

from streamjob.worker.errors import CorruptStateError, SerializationError
from streamjob.worker.snapshot.handles import SnapshotReader, StateHandle
from streamjob.worker.state.serializers import SafeSerializer


def read_in_flight(reader: SnapshotReader, handles: list[StateHandle], serializer: SafeSerializer) -> list[Any]:
    """The records of ``handles``, in order."""
    records: list[Any] = []
    for handle in handles:
        data = reader.read(handle)
        try:
            decoded = serializer.decode(data)
        except SerializationError as err:
            raise CorruptStateError(f"in-flight data file {handle.path} is corrupted: {err}") from err
        if not isinstance(decoded, list):
            raise CorruptStateError(
                f"in-flight data file {handle.path} is corrupted: it holds "
                f"{type(decoded).__name__}, not a list of records"
            )
        records.extend(decoded)
    return records
