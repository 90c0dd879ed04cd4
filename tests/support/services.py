"""Running storycue's services as separate OS processes in tests (never shipped)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

#: What every storycue process a test starts runs with: the CPU, one thread, JSON logs
#: at INFO, no metrics port of its own, and no model hub.
QUIET_PROCESS_ENV: dict[str, str] = {
    "STORYCUE_DEVICE": "cpu",
    "STORYCUE_METRICS_PORT": "0",
    "STORYCUE_LOG_FORMAT": "json",
    "STORYCUE_LOG_LEVEL": "INFO",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
}


def process_env(settings: dict[str, str]) -> dict[str, str]:
    """This process's environment, :data:`QUIET_PROCESS_ENV`, then ``settings``."""
    return {**os.environ, **QUIET_PROCESS_ENV, **settings}


def storycue_command() -> list[str]:
    """The ``storycue`` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("storycue")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from storycue.cli import main; main()"]


@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes]
    starts: int = 1
    log_offset: int = 0
    killed: bool = False  # stopped on purpose by :meth:`Supervisor.kill`


@dataclass
class Supervisor:
    """Starts the service processes, each in its own session (process group) with its
    output in ``<folder>/<name>.log``; kills every one of them (and anything they
    spawned) at teardown, whatever happened."""

    folder: Path
    services: dict[str, Service] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], env: dict[str, str]) -> Service:
        log_path = self.folder / f"{name}.log"
        log = log_path.open("ab")
        self._logs.append(log)
        offset = log.tell()
        log.write(f"---- start {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(argv), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        old = self.services.get(name)
        starts = 1 + (old.starts if old else 0)
        svc = Service(name, list(argv), env, log_path, proc, starts=starts, log_offset=offset)
        self.services[name] = svc
        return svc

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send ``sig`` to the service's process group; its exit status."""
        svc = self.services[name]
        svc.killed = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(svc.proc.pid, sig)
        return svc.proc.wait(60)

    def restart(self, name: str) -> Service:
        svc = self.services[name]
        if svc.proc.poll() is None:
            self.kill(name, signal.SIGKILL)
        return self.start(name, svc.argv, svc.env)

    def log_text(self, name: str) -> str:
        """What the service's current process (since its last start) has logged."""
        svc = self.services[name]
        with svc.log_path.open("rb") as f:
            f.seek(svc.log_offset)
            return f.read().decode("utf-8", "replace")

    def dead(self) -> list[str]:
        """The services that exited unasked, with their exit status."""
        return [
            f"{n} (exit {s.proc.returncode})"
            for n, s in self.services.items()
            if not s.killed and s.proc.poll() is not None
        ]

    def tails(self, lines: int = 25) -> str:
        out = []
        for name, svc in self.services.items():
            try:
                text = svc.log_path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                text = []
            out.append(f"==== {name} ({svc.log_path})\n" + "\n".join(text))
        return "\n".join(out)

    def wait_for(
        self, what: str, check: Callable[[], bool], timeout_s: float, every_s: float = 0.5
    ) -> None:
        """Poll ``check`` until true; fail (with every service's log tail) on timeout or
        when a service died."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if check():
                return
            dead = self.dead()
            if dead:
                pytest.fail(f"{', '.join(dead)} exited while waiting for {what}\n{self.tails()}")
            time.sleep(every_s)
        pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}\n{self.tails()}")

    def stop_all(self) -> None:
        for svc in self.services.values():
            if svc.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(svc.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for svc in self.services.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                svc.proc.wait(max(0.1, deadline - time.monotonic()))
            # Whatever is left of the group (the leader included) goes now.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(svc.proc.pid, signal.SIGKILL)
            if svc.proc.poll() is None:
                svc.proc.wait(30)
        for log in self._logs:
            log.close()
