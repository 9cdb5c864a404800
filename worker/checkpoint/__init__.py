"""Checkpoint coordination and its lifecycle (pending, completed, store); the data model is in ``snapshot``."""
