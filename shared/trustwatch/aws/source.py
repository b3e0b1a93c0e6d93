"""Read a baseline from S3: `s3://bucket/key` (trustwatch.baseline_source asks each cloud by URL scheme)."""

from __future__ import annotations

from typing import Any

from trustwatch.baseline_source import TIMEOUT_S, bucket_and_key

SCHEMES = ("s3",)


def read(location: str, credential: Any = None) -> bytes:
    """The object's bytes, read with the function's role (boto3 defaults apply)."""
    import boto3
    from botocore.config import Config

    bucket, key = bucket_and_key(location)
    client = boto3.client("s3", config=Config(connect_timeout=5, read_timeout=TIMEOUT_S))
    body: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body
