"""A local S3 server (moto, in a thread) holding one bucket, for the S3 source tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from support.local import absent


@contextmanager
def local_s3(monkeypatch: pytest.MonkeyPatch, bucket: str) -> Iterator[tuple[Any, str]]:
    """``(boto3 client, endpoint URL)`` of a moto S3 server on loopback with ``bucket``
    created and test credentials in the environment; the server stops afterwards."""
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        absent(f"boto3 and moto[server] are needed for the S3 tests: {exc}")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket=bucket)
        yield client, endpoint
    finally:
        server.stop()
