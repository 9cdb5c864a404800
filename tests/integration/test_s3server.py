import pytest

from tests.support.s3server import S3Endpoint, SeaweedServer

pytestmark = pytest.mark.integration


def test_seaweed_keeps_objects_across_a_kill(s3_server: SeaweedServer, s3: S3Endpoint) -> None:
    client = s3.client()
    client.put_object(Bucket=s3.bucket, Key="probe/a", Body=b"hello")
    s3_server.kill()
    s3_server.start()
    assert client.get_object(Bucket=s3.bucket, Key="probe/a")["Body"].read() == b"hello"


def test_seaweed_enforces_credentials(s3: S3Endpoint) -> None:
    import boto3
    from botocore.exceptions import ClientError

    bad = boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        aws_access_key_id="nobody",
        aws_secret_access_key="wrong",
        region_name=s3.region,
    )
    with pytest.raises(ClientError):
        bad.list_objects_v2(Bucket=s3.bucket)
