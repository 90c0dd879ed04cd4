"""Small helpers shared by the tests: the rule for a missing tool or service (a skip, an
error under CI), a free loopback port, and an HTTP server on loopback for a handler."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NoReturn

import pytest


def in_ci() -> bool:
    """Whether this run is CI's (``CI`` set to anything but empty, 0, false or no)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def absent(reason: str) -> NoReturn:
    """The one rule for a missing tool or service: skip with ``reason``, or fail under CI,
    where every tool and service must be there (``.ci/run`` installs or starts them)."""
    if in_ci():
        pytest.fail(f"{reason} (required under CI)")
    pytest.skip(reason)


def stop_process(proc: subprocess.Popen[bytes] | None, timeout_s: float = 15.0) -> None:
    """Terminate a child process a test started (a no-op when it has ended); kill it when
    it outlives ``timeout_s``."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def require_port(what: str, host: str, port: int) -> None:
    """:func:`absent` unless something listens at ``host:port``."""
    try:
        socket.create_connection((host, port), 2).close()
    except OSError as exc:
        absent(f"{what} is not reachable at {host}:{port}: {exc}")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that keeps the server's access log out of the test output."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` served by ``handler`` in a daemon thread until exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` served by an ASGI ``app`` (uvicorn in a daemon thread)
    until exit: a live gateway for clients that speak HTTP (a browser, schemathesis)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("the gateway did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def ingest_over_api(
    client: Any, headers: dict[str, str], catalogue: str, tracks: list[dict[str, Any]]
) -> None:
    """Create ``catalogue``, register ``tracks`` and ingest them through the API, as a
    platform would; fails unless the ingest job succeeds."""
    assert (
        client.post("/v1/catalogues", json={"name": catalogue}, headers=headers).status_code == 201
    )
    r = client.post(f"/v1/catalogues/{catalogue}/tracks", json={"tracks": tracks}, headers=headers)
    assert r.status_code == 201, r.text
    job = client.post(f"/v1/catalogues/{catalogue}/ingest", headers=headers).json()
    for _ in range(600):
        job = client.get(f"/v1/jobs/{job['id']}", headers=headers).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.1)
    assert job["state"] == "succeeded", job
