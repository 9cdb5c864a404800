"""Checkpoint coordination, metadata and the checkpoint lifecycle (pending, completed, store)."""
