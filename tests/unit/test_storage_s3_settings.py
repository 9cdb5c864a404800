"""A job config's S3 overrides over the environment's settings (``storage.s3_settings.s3_settings_for``)."""

from __future__ import annotations

import pytest

from streamjob.worker.config import S3Options
from streamjob.worker.storage.s3_settings import S3Settings, s3_settings_for

pytestmark = pytest.mark.unit

ENV = {
    "STREAMJOB_S3_ENDPOINT": "http://env:8333",
    "STREAMJOB_S3_REGION": "eu-west-1",
    "STREAMJOB_S3_PATH_STYLE": "true",
    "AWS_ACCESS_KEY_ID": "id",
    "AWS_SECRET_ACCESS_KEY": "secret",
}


def test_no_overrides_keep_the_environment() -> None:
    assert s3_settings_for(S3Options(), ENV) == S3Settings.from_env(ENV)


def test_overrides_replace_only_what_they_set_and_never_the_credentials() -> None:
    got = s3_settings_for(S3Options(endpoint_url="http://cfg:9000", path_style=False), ENV)
    assert (got.endpoint_url, got.region, got.path_style) == ("http://cfg:9000", "eu-west-1", False)
    assert (got.access_key_id, got.secret_access_key) == ("id", "secret")
    assert s3_settings_for(S3Options(region="ap-south-1"), {}).region == "ap-south-1"


def test_a_bad_environment_is_still_refused() -> None:
    from streamjob.worker.errors import ConfigError

    with pytest.raises(ConfigError, match="STREAMJOB_S3_PATH_STYLE"):
        s3_settings_for(S3Options(path_style=True), {"STREAMJOB_S3_PATH_STYLE": "maybe"})
