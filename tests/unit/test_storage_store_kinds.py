"""A store opens other roots of its own kind only (``ObjectStore.at``); other kinds come from ``StoreFactory``."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamjob.worker.errors import ConfigError
from streamjob.worker.storage.file_store import FileObjectStore
from streamjob.worker.storage.s3_settings import S3Settings
from streamjob.worker.storage.s3_store import S3ClientHolder, S3ObjectStore
from streamjob.worker.storage.stores import StoreFactory
from streamjob.worker.storage.uri import parse_storage_uri

pytestmark = pytest.mark.unit


def test_a_file_store_opens_other_directories_but_not_s3(tmp_path: Path) -> None:
    store = FileObjectStore(parse_storage_uri(tmp_path.as_uri()))
    store.put("a/b", b"x")
    inner = store.at(parse_storage_uri((tmp_path / "a").as_uri()))
    assert inner.get("b") == b"x"
    with pytest.raises(ConfigError, match=r"s3://bucket/p is not a file:// location.*StoreFactory.open"):
        store.at(parse_storage_uri("s3://bucket/p"))


def test_an_s3_store_shares_its_client_with_s3_roots_and_refuses_files(tmp_path: Path) -> None:
    holder = S3ClientHolder(S3Settings(endpoint_url="http://127.0.0.1:1"))  # never contacted
    store = S3ObjectStore(parse_storage_uri("s3://bucket/a"), holder)
    other = store.at(parse_storage_uri("s3://other/b"))
    assert isinstance(other, S3ObjectStore) and other.root == parse_storage_uri("s3://other/b")
    assert other.settings is store.settings
    with pytest.raises(ConfigError, match=r"is not a s3:// location"):
        store.at(parse_storage_uri(tmp_path.as_uri()))


def test_the_factory_opens_both_kinds(tmp_path: Path) -> None:
    factory = StoreFactory(S3Settings(endpoint_url="http://127.0.0.1:1"))
    assert isinstance(factory.open(tmp_path.as_uri()), FileObjectStore)
    assert isinstance(factory.open("s3://bucket/p"), S3ObjectStore)
