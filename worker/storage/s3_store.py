"""``ObjectStore`` on S3-compatible servers (AWS, MinIO, SeaweedFS, Ceph): the only boto3 importer.

Every botocore / OS error is wrapped into a ``StorageError`` whose message says what to fix: an
unreachable endpoint names the endpoint and ``STREAMJOB_S3_ENDPOINT``, a missing bucket names the
bucket, refused credentials name the credential variables. Transient failures (connection errors,
timeouts, 5xx, throttling) are retried with bounded exponential backoff (``RetryPolicy``); botocore's
own retries are off so that the bound is ours. ``if_absent`` writes use ``IfNoneMatch='*'``.

One boto3 client per ``S3ClientHolder``, created lazily under a lock (clients are thread-safe and
shared by every store ``at()`` derives). Opened by ``stores.open_store`` / ``StoreFactory``.
"""

from __future__ import annotations

import builtins
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
import botocore.config
import botocore.exceptions

from streamjob.worker.errors import StorageError
from streamjob.worker.storage.object_store import (
    ObjectInfo,
    ObjectNotFoundError,
    ObjectStore,
    PendingUpload,
    UploadedPart,
    check_key,
    check_prefix,
    same_scheme,
    too_large,
)
from streamjob.worker.storage.s3_settings import CREDENTIAL_ENVS, ENDPOINT_ENV, S3Settings
from streamjob.worker.storage.uri import StorageUri

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

_T = TypeVar("_T")

_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "RequestTimeout",
        "Throttling",
        "ThrottlingException",
        "InternalError",
        "ServiceUnavailable",
        "ConditionalRequestConflict",
    }
)
_CREDENTIAL_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AllAccessDisabled",
        "403",
    }
)
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchUpload"})
_CREDENTIAL_HINT = f"check {', '.join(CREDENTIAL_ENVS[:2])} (and {CREDENTIAL_ENVS[2]} for temporary credentials)"


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff for transient S3 failures."""

    attempts: int = 4
    base_delay_s: float = 0.1
    max_delay_s: float = 2.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.max_delay_s, self.base_delay_s * (2 ** (attempt - 1))))


class S3ClientHolder:
    """Creates one boto3 S3 client lazily (thread-safe) for a set of settings."""

    def __init__(self, settings: S3Settings) -> None:
        """Remembers the settings; no network access until the first call."""
        self.settings = settings
        self._client: S3Client | None = None
        self._lock = threading.Lock()

    def client(self) -> S3Client:
        """The shared client, created on first use."""
        with self._lock:
            if self._client is None:
                self._client = self._create()
            return self._client

    def _create(self) -> S3Client:
        s = self.settings
        session = boto3.session.Session(
            aws_access_key_id=s.access_key_id,
            aws_secret_access_key=s.secret_access_key,
            aws_session_token=s.session_token,
            region_name=s.region,
        )
        config = botocore.config.Config(
            region_name=s.region,
            s3={"addressing_style": "path" if s.path_style else "auto"},
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
            max_pool_connections=32,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        try:
            return session.client("s3", endpoint_url=s.endpoint_url, config=config)
        except (botocore.exceptions.BotoCoreError, ValueError) as err:
            raise StorageError(
                f"cannot create an S3 client for endpoint {s.endpoint_label}: {err}; check "
                f"{ENDPOINT_ENV} and STREAMJOB_S3_REGION"
            ) from err


def _error_code(err: botocore.exceptions.ClientError) -> tuple[str, int]:
    error = err.response.get("Error", {})
    status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return str(error.get("Code", "")), status


def _is_transient(err: Exception) -> bool:
    if isinstance(err, (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)):
        return True
    if isinstance(err, botocore.exceptions.ClientError):
        code, status = _error_code(err)
        return code in _TRANSIENT_CODES or status >= 500
    return False


def _request(operation: str, args: dict[str, Any]) -> Callable[[S3Client], dict[str, Any]]:
    """A call of client method ``operation`` with ``args``, for ``S3ObjectStore._call``."""

    def call(client: S3Client) -> dict[str, Any]:
        return dict(getattr(client, operation)(**args))

    return call


class S3ObjectStore(ObjectStore):
    """Objects under ``s3://bucket/prefix``."""

    def __init__(self, root: StorageUri, holder: S3ClientHolder, *, retry: RetryPolicy | None = None) -> None:
        """Binds the store to an ``s3://`` root; ``holder`` supplies the (shared) client."""
        if root.scheme != "s3":
            raise StorageError(f"S3ObjectStore needs an s3:// root, got {root}")
        self._root = root
        self._holder = holder
        self._retry = retry or RetryPolicy()
        self._prefix = f"{root.path}/" if root.path else ""

    @property
    def root(self) -> StorageUri:
        """The ``s3://bucket/prefix`` keys are relative to."""
        return self._root

    @property
    def settings(self) -> S3Settings:
        """The connection settings of this store's client."""
        return self._holder.settings

    def at(self, uri: StorageUri) -> ObjectStore:
        """A store rooted at another ``s3://`` location, sharing this store's client (others: ``StoreFactory``)."""
        return S3ObjectStore(same_scheme(self._root, uri), self._holder, retry=self._retry)

    def _full(self, key: str) -> str:
        return self._prefix + check_key(key)

    def _call(self, action: str, key: str, fn: Callable[[S3Client], _T]) -> _T:
        """Runs ``fn`` with retries; translates the final failure into a ``StorageError``."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn(self._holder.client())
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, OSError) as err:
                if attempt < self._retry.attempts and _is_transient(err):
                    self._retry.sleep(self._retry.delay(attempt))
                    continue
                raise self._translate(err, action, key, attempt) from err

    def _translate(self, err: Exception, action: str, key: str, attempts: int) -> StorageError:
        bucket = self._root.bucket
        where = f"s3://{bucket}/{self._prefix}{key}"
        endpoint = self.settings.endpoint_label
        if isinstance(err, botocore.exceptions.NoCredentialsError):
            return StorageError(
                f"cannot {action} {where}: no S3 credentials were found; set "
                f"{', '.join(CREDENTIAL_ENVS[:2])} (or configure an instance role)"
            )
        if isinstance(err, (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)):
            return StorageError(
                f"cannot reach the S3 endpoint {endpoint} to {action} {where} "
                f"({type(err).__name__}, {attempts} attempts): is the server running, and is "
                f"{ENDPOINT_ENV} right?"
            )
        if isinstance(err, botocore.exceptions.ClientError):
            code, status = _error_code(err)
            message = err.response.get("Error", {}).get("Message", "")
            if code == "NoSuchBucket":
                return StorageError(
                    f"cannot {action} {where}: the bucket {bucket!r} does not exist at "
                    f"{endpoint}; create it or fix the storage URI"
                )
            if code in _NOT_FOUND_CODES or status == 404:
                return ObjectNotFoundError(f"{where} does not exist")
            if code in _CREDENTIAL_CODES or status == 403:
                return StorageError(
                    f"cannot {action} {where}: {endpoint} refused the credentials "
                    f"({code or status}); {_CREDENTIAL_HINT}, and that they may access "
                    f"bucket {bucket!r}"
                )
            return StorageError(f"cannot {action} {where} at {endpoint}: {code or status} {message}".rstrip())
        return StorageError(f"cannot {action} {where} at {endpoint}: {err}")

    def warm_up(self) -> None:
        """Creates the client (botocore loads the S3 service model: ~0.2 s of CPU) and opens a connection.

        Best effort, read-only (one ListObjectsV2 of at most one key under the root): a failure
        here is left for the first real request to report.
        """
        try:
            self._holder.client().list_objects_v2(Bucket=self._root.bucket, Prefix=self._prefix, MaxKeys=1)
        except Exception as err:
            log.debug("warming up the S3 client for %s failed: %s", self._root, err)

    # Single objects

    def put(self, key: str, data: bytes, *, if_absent: bool = False, durable: bool = True) -> bool:
        """PutObject (with ``IfNoneMatch='*'`` when ``if_absent``)."""
        full = self._full(key)

        def put(client: S3Client) -> bool:
            if not if_absent:
                client.put_object(Bucket=self._root.bucket, Key=full, Body=data)
                return True
            try:
                client.put_object(Bucket=self._root.bucket, Key=full, Body=data, IfNoneMatch="*")
            except botocore.exceptions.ClientError as err:
                code, status = _error_code(err)
                if code == "PreconditionFailed" or status == 412:
                    return False
                raise
            return True

        return self._call("write", key, put)

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """GetObject, reading the whole body (unless it is larger than ``max_bytes``)."""
        full = self._full(key)

        def get(client: S3Client) -> bytes:
            response = client.get_object(Bucket=self._root.bucket, Key=full)
            body = response["Body"]
            if max_bytes is None:
                return body.read()  # type: ignore[no-any-return]
            size = int(response.get("ContentLength", 0))
            if size > max_bytes:
                body.close()
                raise too_large(f"s3://{self._root.bucket}/{full}", size, max_bytes)
            data: bytes = body.read(max_bytes + 1)
            if len(data) > max_bytes:
                body.close()
                raise too_large(f"s3://{self._root.bucket}/{full}", len(data), max_bytes)
            return data

        return self._call("read", key, get)

    def exists(self, key: str) -> bool:
        """HeadObject; 404 means absent."""
        full = self._full(key)

        def head(client: S3Client) -> bool:
            try:
                client.head_object(Bucket=self._root.bucket, Key=full)
            except botocore.exceptions.ClientError as err:
                code, status = _error_code(err)
                if status == 404 and code != "NoSuchBucket":
                    return False
                raise
            return True

        return self._call("inspect", key, head)

    def _pages(self, action: str, label: str, **kwargs: Any) -> Iterable[dict[str, Any]]:
        token: str | None = None
        while True:
            args = dict(kwargs, Bucket=self._root.bucket)
            if token:
                args["ContinuationToken"] = token
            page: dict[str, Any] = dict(self._call(action, label, _request("list_objects_v2", args)))
            yield page
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        """ListObjectsV2, every page."""
        check_prefix(prefix)
        found: list[ObjectInfo] = []
        for page in self._pages("list", prefix, Prefix=self._prefix + prefix):
            for obj in page.get("Contents", []):
                key = str(obj["Key"])[len(self._prefix) :]
                if key and not key.endswith("/"):  # skip "folder" markers some tools create
                    found.append(ObjectInfo(key, int(obj["Size"]), obj["LastModified"]))
        return sorted(found, key=lambda info: info.key)

    def list_dirs(self, prefix: str = "") -> builtins.list[str]:
        """ListObjectsV2 with ``Delimiter='/'``: the last segments of the non-empty common prefixes."""
        rel = check_prefix(prefix).strip("/")
        base = self._prefix + (f"{rel}/" if rel else "")
        names: set[str] = set()
        for page in self._pages("list", rel, Prefix=base, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                name = str(common["Prefix"])[len(base) :].rstrip("/")
                if name and self._holds_objects(str(common["Prefix"])):
                    names.add(name)
        return sorted(names)

    def _holds_objects(self, full_prefix: str) -> bool:
        """Whether any object is under ``full_prefix``.

        Filer-backed servers such as SeaweedFS keep emptied folders and list them as common prefixes.
        """
        page = self._call(
            "list",
            full_prefix[len(self._prefix) :],
            _request("list_objects_v2", {"Bucket": self._root.bucket, "Prefix": full_prefix, "MaxKeys": 1}),
        )
        return bool(page.get("Contents"))

    def delete(self, key: str) -> None:
        """DeleteObject (S3 treats a missing key as deleted)."""
        full = self._full(key)
        self._call("delete", key, lambda c: c.delete_object(Bucket=self._root.bucket, Key=full))

    def delete_many(self, keys: Iterable[str]) -> None:
        """DeleteObjects in batches of 1000; per-key failures raise."""
        fulls = [self._full(key) for key in keys]
        for start in range(0, len(fulls), 1000):
            batch = fulls[start : start + 1000]
            request: Any = {"Objects": [{"Key": k} for k in batch], "Quiet": True}
            result = self._call(
                "delete",
                batch[0][len(self._prefix) :],
                _request("delete_objects", {"Bucket": self._root.bucket, "Delete": request}),
            )
            errors = [e for e in result.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if errors:
                first = errors[0]
                raise StorageError(
                    f"cannot delete {len(errors)} objects under {self._root} (first: "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message', '')})"
                )

    # Multipart uploads

    def begin_upload(self, key: str) -> str:
        """CreateMultipartUpload."""
        full = self._full(key)
        result = self._call(
            "begin an upload of", key, lambda c: c.create_multipart_upload(Bucket=self._root.bucket, Key=full)
        )
        return str(result["UploadId"])

    def upload_part(self, key: str, upload_id: str, part_number: int, data: bytes) -> UploadedPart:
        """UploadPart; returns the part's ETag."""
        full = self._full(key)
        result = self._call(
            "upload a part of",
            key,
            lambda c: c.upload_part(
                Bucket=self._root.bucket, Key=full, UploadId=upload_id, PartNumber=part_number, Body=data
            ),
        )
        return UploadedPart(part_number, str(result["ETag"]))

    def complete_upload(self, key: str, upload_id: str, parts: builtins.list[UploadedPart]) -> None:
        """CompleteMultipartUpload with the parts in part-number order."""
        full = self._full(key)
        ordered: Any = {
            "Parts": [{"PartNumber": p.part_number, "ETag": p.etag} for p in sorted(parts, key=lambda p: p.part_number)]
        }
        self._call(
            "complete the upload of",
            key,
            lambda c: c.complete_multipart_upload(
                Bucket=self._root.bucket, Key=full, UploadId=upload_id, MultipartUpload=ordered
            ),
        )

    def abort_upload(self, key: str, upload_id: str) -> None:
        """AbortMultipartUpload; an unknown upload is ignored."""
        full = self._full(key)
        try:
            self._call(
                "abort the upload of",
                key,
                lambda c: c.abort_multipart_upload(Bucket=self._root.bucket, Key=full, UploadId=upload_id),
            )
        except ObjectNotFoundError:
            return

    def list_pending_uploads(self, prefix: str = "") -> builtins.list[PendingUpload]:
        """ListMultipartUploads, every page."""
        check_prefix(prefix)
        found: list[PendingUpload] = []
        markers: dict[str, str] = {}
        while True:
            args: dict[str, Any] = dict(markers, Bucket=self._root.bucket, Prefix=self._prefix + prefix)
            page = self._call("list uploads under", prefix, _request("list_multipart_uploads", args))
            for upload in page.get("Uploads", []):
                found.append(
                    PendingUpload(str(upload["Key"])[len(self._prefix) :], str(upload["UploadId"]), upload["Initiated"])
                )
            if not page.get("IsTruncated"):
                break
            markers = {
                "KeyMarker": str(page.get("NextKeyMarker", "")),
                "UploadIdMarker": str(page.get("NextUploadIdMarker", "")),
            }
        return sorted(found, key=lambda up: (up.key, up.initiated))
