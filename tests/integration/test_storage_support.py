"""Helpers shared by the storage integration tests (no tests here): a fresh root on file://, SeaweedFS, or
the test kit's in-memory storage (``memory``: file URIs that only name keys)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from streamjob.worker.storage.object_store import ObjectStore
from streamjob.worker.storage.s3_settings import S3Settings
from streamjob.worker.storage.stores import StoreFactory
from streamjob.worker.testing.memory import InMemoryStorage
from tests.support.s3server import S3Endpoint


@dataclass(frozen=True)
class Root:
    uri: str
    settings: S3Settings | None
    stores: StoreFactory | None = None
    """The factory every store of this root comes from (the in-memory one); None: a new ``StoreFactory``."""

    def factory(self) -> StoreFactory:
        return self.stores or StoreFactory(self.settings)

    def store(self, *parts: str) -> ObjectStore:
        from streamjob.worker.storage.uri import parse_storage_uri

        return self.factory().open(parse_storage_uri(self.uri).join(*parts))


def s3_settings(s3: S3Endpoint) -> S3Settings:
    return S3Settings(
        endpoint_url=s3.endpoint_url,
        region=s3.region,
        path_style=True,
        access_key_id=s3.access_key,
        secret_access_key=s3.secret_key,
    )


def make_root(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Root:
    if kind == "file":
        return Root(f"file://{tmp_path}/store", None)
    if kind == "memory":
        return Root(f"file://{tmp_path}/in-memory", None, InMemoryStorage())
    s3: S3Endpoint = request.getfixturevalue("s3")
    return Root(f"s3://{s3.bucket}/t-{uuid.uuid4().hex[:12]}", s3_settings(s3))
