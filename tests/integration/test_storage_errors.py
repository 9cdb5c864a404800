from __future__ import annotations

import time

import pytest

from streamjob.worker.errors import StorageError
from streamjob.worker.storage.discovery import find_latest_retained
from streamjob.worker.storage.s3_settings import S3Settings
from streamjob.worker.storage.stores import open_store
from tests.integration.test_storage_support import s3_settings
from tests.support.s3server import S3Endpoint, free_port

pytestmark = pytest.mark.integration


def test_unreachable_endpoint_names_the_endpoint_and_the_variable() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    settings = S3Settings(endpoint_url=endpoint, path_style=True, access_key_id="a", secret_access_key="b")
    store = open_store("s3://bucket/prefix", settings)
    started = time.monotonic()
    with pytest.raises(StorageError) as info:
        store.get("chk-1/_metadata")
    message = str(info.value)
    assert endpoint in message
    assert "STREAMJOB_S3_ENDPOINT" in message
    assert "s3://bucket/prefix/chk-1/_metadata" in message
    assert time.monotonic() - started < 30  # bounded retries
    with pytest.raises(StorageError, match="STREAMJOB_S3_ENDPOINT"):
        find_latest_retained("s3://bucket/ckpt", "ns", "name", "job", s3=settings)


def test_missing_bucket_is_named(s3: S3Endpoint) -> None:
    # (no put: SeaweedFS creates a missing bucket on PutObject for an admin identity)
    store = open_store("s3://no-such-bucket-here/x", s3_settings(s3))
    for action in (
        lambda: store.get("k"),
        lambda: store.list(""),
        lambda: store.list_dirs(""),
        lambda: find_latest_retained(store, "ns", "name", "job"),
    ):
        with pytest.raises(StorageError) as info:
            action()
        assert "'no-such-bucket-here' does not exist" in str(info.value)


@pytest.mark.parametrize(("key_id", "secret"), [("nobody", "wrong"), ("streamjob-test", "wrong-secret")])
def test_bad_credentials_name_the_variables(s3: S3Endpoint, key_id: str, secret: str) -> None:
    settings = S3Settings(
        endpoint_url=s3.endpoint_url, region=s3.region, path_style=True, access_key_id=key_id, secret_access_key=secret
    )
    store = open_store(f"s3://{s3.bucket}/creds", settings)
    for action in (lambda: store.get("k"), lambda: store.put("k", b"1"), lambda: store.list("")):
        with pytest.raises(StorageError) as info:
            action()
        message = str(info.value)
        assert "AWS_ACCESS_KEY_ID" in message and "AWS_SECRET_ACCESS_KEY" in message
        assert s3.endpoint_url in message


def test_settings_from_the_fixture_env(s3_prefix: str) -> None:
    store = open_store(s3_prefix)  # S3Settings.from_env() with the server's variables
    store.put("probe", b"1")
    assert store.get("probe") == b"1"
