"""The S3 adapter's retries and error messages, against a fake client (no server)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from streamjob.worker.errors import StorageError
from streamjob.worker.storage.object_store import ObjectNotFoundError
from streamjob.worker.storage.s3_settings import S3Settings
from streamjob.worker.storage.s3_store import RetryPolicy, S3ClientHolder, S3ObjectStore
from streamjob.worker.storage.uri import parse_storage_uri

pytestmark = pytest.mark.unit

ENDPOINT = "http://127.0.0.1:9"


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": f"{code} happened"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetObject",
    )


class FakeClient:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.calls = 0

    def get_object(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        assert kwargs == {"Bucket": "bucket", "Key": "pre/fix/chk-1/_metadata"}
        return {"Body": io.BytesIO(b"ok")}


class FakeHolder(S3ClientHolder):
    def __init__(self, client: FakeClient) -> None:
        super().__init__(S3Settings(endpoint_url=ENDPOINT))
        self.fake = client

    def client(self) -> Any:
        return self.fake


def store_with(failures: list[Exception]) -> tuple[S3ObjectStore, FakeClient, list[float]]:
    sleeps: list[float] = []
    fake = FakeClient(failures)
    store = S3ObjectStore(
        parse_storage_uri("s3://bucket/pre/fix"),
        FakeHolder(fake),
        retry=RetryPolicy(attempts=4, base_delay_s=0.1, max_delay_s=0.3, sleep=sleeps.append),
    )
    return store, fake, sleeps


def test_transient_errors_are_retried_with_bounded_backoff() -> None:
    store, fake, sleeps = store_with(
        [
            EndpointConnectionError(endpoint_url=ENDPOINT),
            client_error("SlowDown", 503),
            client_error("InternalError", 500),
        ]
    )
    assert store.get("chk-1/_metadata") == b"ok"
    assert fake.calls == 4
    assert sleeps == [0.1, 0.2, 0.3]


def test_unreachable_endpoint_gives_up_and_names_the_endpoint() -> None:
    store, fake, sleeps = store_with([EndpointConnectionError(endpoint_url=ENDPOINT) for _ in range(10)])
    with pytest.raises(StorageError) as info:
        store.get("chk-1/_metadata")
    assert fake.calls == 4 and len(sleeps) == 3
    message = str(info.value)
    assert ENDPOINT in message and "STREAMJOB_S3_ENDPOINT" in message and "4 attempts" in message
    assert "s3://bucket/pre/fix/chk-1/_metadata" in message
    assert isinstance(info.value.__cause__, EndpointConnectionError)


@pytest.mark.parametrize(
    ("error", "needles"),
    [
        (client_error("NoSuchBucket", 404), ["'bucket' does not exist", ENDPOINT]),
        (client_error("AccessDenied", 403), ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]),
        (client_error("InvalidAccessKeyId", 403), ["AWS_ACCESS_KEY_ID", "refused the credentials"]),
        (client_error("SignatureDoesNotMatch", 403), ["AWS_SECRET_ACCESS_KEY"]),
        (NoCredentialsError(), ["no S3 credentials", "AWS_ACCESS_KEY_ID"]),
        (client_error("WeirdError", 400), ["WeirdError", "WeirdError happened"]),
    ],
)
def test_permanent_errors_are_not_retried_and_say_what_to_fix(error: Exception, needles: list[str]) -> None:
    store, fake, sleeps = store_with([error])
    with pytest.raises(StorageError) as info:
        store.get("chk-1/_metadata")
    assert fake.calls == 1 and sleeps == []
    for needle in needles:
        assert needle in str(info.value)


def test_missing_key_is_object_not_found() -> None:
    store, _, _ = store_with([client_error("NoSuchKey", 404)])
    with pytest.raises(ObjectNotFoundError, match="chk-1/_metadata does not exist"):
        store.get("chk-1/_metadata")


def test_retry_policy_delays() -> None:
    policy = RetryPolicy(attempts=5, base_delay_s=0.5, max_delay_s=1.5)
    assert [policy.delay(n) for n in range(1, 5)] == [0.5, 1.0, 1.5, 1.5]
