"""The snapshot data model: what a checkpoint or savepoint is made of, below everything that makes or reads one.

``handles.py`` holds the state handles and the ``SnapshotWriter``/``SnapshotReader`` protocols that
state backends write through; ``metadata.py`` holds the ``_metadata`` format and the jobId lineage
record. The state backends, the storage layer, the checkpoint coordinator, the runtime, the protocol
messages and the operator all import it; it imports nothing of streamjob but ``errors``, so the
operator can read snapshots without pulling in the runtime.
"""
