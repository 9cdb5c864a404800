"""Storage URIs: ``file:///abs/path`` and ``s3://bucket/prefix``, parsed once into a frozen value.

Every storage entry point (``open_store``, ``CheckpointStorage``, discovery, the CLI's
``--checkpoint-dir`` / ``--restore``, the operator's storage spec) parses user text with
``parse_storage_uri`` and passes ``StorageUri`` values around; ``str(uri)`` gives the canonical text
back. Paths inside a URI are ``/``-separated segments with no ``.``/``..`` and no empty segments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

from streamjob.worker.errors import ConfigError

Scheme = Literal["file", "s3"]

ACCEPTED_FORMS = "file:///abs/path, /abs/path or s3://bucket/prefix"
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


def _bad(text: str, why: str) -> ConfigError:
    return ConfigError(f"invalid storage URI {text!r}: {why}; accepted forms: {ACCEPTED_FORMS}")


def split_segments(path: str, *, what: str) -> tuple[str, ...]:
    """Splits a relative ``a/b/c`` path into segments, rejecting empty, ``.`` and ``..`` segments."""
    if path == "":
        return ()
    segments = tuple(path.split("/"))
    for segment in segments:
        if segment in ("", ".", ".."):
            raise ConfigError(f"invalid {what} {path!r}: empty, '.' and '..' path segments are not allowed")
    return segments


@dataclass(frozen=True)
class StorageUri:
    """A parsed storage location.

    ``path`` is the key prefix without leading or trailing ``/`` for S3 (``""`` for a bucket root)
    and the absolute filesystem path without a trailing ``/`` for files (``/`` for the root).
    """

    scheme: Scheme
    bucket: str
    path: str

    def join(self, *parts: str) -> StorageUri:
        """This URI with ``parts`` appended; each part may hold ``/``-separated segments."""
        segments: list[str] = []
        for part in parts:
            segments.extend(split_segments(part.strip("/"), what="path part"))
        if not segments:
            return self
        tail = "/".join(segments)
        if self.scheme == "s3":
            return StorageUri("s3", self.bucket, f"{self.path}/{tail}" if self.path else tail)
        return StorageUri("file", "", f"{self.path.rstrip('/')}/{tail}")

    @property
    def name(self) -> str:
        """The last path segment (``""`` for a bucket or filesystem root)."""
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> StorageUri:
        """The URI one segment up (a root is its own parent)."""
        if self.scheme == "s3":
            return StorageUri("s3", self.bucket, self.path.rsplit("/", 1)[0] if "/" in self.path else "")
        head = self.path.rsplit("/", 1)[0]
        return StorageUri("file", "", head or "/")

    def relative_to(self, other: StorageUri) -> str | None:
        """The ``/``-separated path of this URI below ``other``, or None if it is not below it."""
        if (self.scheme, self.bucket) != (other.scheme, other.bucket):
            return None
        base = other.path.rstrip("/")
        if self.path.rstrip("/") == base:
            return ""
        prefix = f"{base}/" if base or self.scheme == "file" else ""
        if not self.path.startswith(prefix):
            return None
        return self.path[len(prefix) :]

    def __str__(self) -> str:
        if self.scheme == "s3":
            return f"s3://{self.bucket}/{self.path}" if self.path else f"s3://{self.bucket}"
        return f"file://{self.path}"


def parse_storage_uri(text: str | StorageUri) -> StorageUri:
    """Parses ``file:///abs/path``, a bare ``/abs/path`` or ``s3://bucket/prefix``.

    ``filesystem://<uri>`` (Flink's storage kind in front of the URI, as the seed writes it) is ``<uri>``;
    ``hdfs://`` is refused with the substitutes named.

    Raises ``ConfigError`` naming the value and the accepted forms.
    """
    if isinstance(text, StorageUri):
        return text
    raw = text.strip()
    if not raw:
        raise _bad(text, "it is empty")
    if raw.startswith("/"):
        return _file_uri(text, raw)
    if "://" not in raw:
        raise _bad(text, "a scheme or an absolute path is required (relative paths are ambiguous)")
    if raw.lower().startswith("filesystem://"):  # Flink's checkpoint-storage kind written in front of the URI
        return parse_storage_uri(raw[len("filesystem://") :])
    parts = urlsplit(raw)
    if parts.query or parts.fragment:
        raise _bad(text, "query strings and fragments are not allowed")
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise _bad(text, f"file URIs take no host (got {parts.netloc!r}); use three slashes")
        return _file_uri(text, unquote(parts.path))
    if scheme == "s3":
        bucket = parts.netloc
        if not _BUCKET.match(bucket):
            raise _bad(text, f"{bucket!r} is not a valid bucket name")
        prefix = parts.path.strip("/")
        try:
            split_segments(prefix, what="key prefix")
        except ConfigError as err:
            raise _bad(text, str(err)) from None
        return StorageUri("s3", bucket, prefix)
    if scheme in ("hdfs", "viewfs", "webhdfs"):
        raise _bad(
            text,
            "HDFS is not a checkpoint store of streamjob: point it at an S3-compatible endpoint instead "
            "(s3://bucket/prefix; HDFS clusters serve one through an S3 gateway such as Ozone's or a MinIO "
            "gateway) or at a file:// path on a shared mount",
        )
    raise _bad(text, f"unsupported scheme {parts.scheme!r}")


def _file_uri(text: str, path: str) -> StorageUri:
    if not path.startswith("/"):
        raise _bad(text, "file paths must be absolute")
    inner = path.strip("/")
    try:
        split_segments(inner, what="path")
    except ConfigError as err:
        raise _bad(text, str(err)) from None
    return StorageUri("file", "", f"/{inner}")
