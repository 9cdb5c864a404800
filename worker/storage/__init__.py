"""Checkpoint storage: URIs, the file and S3 object stores, and the storage layout."""
