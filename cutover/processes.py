"""Start and stop the harness's child processes: the sandbox and mitmdump.

Each child runs in its own session, so a Ctrl-C in the terminal reaches only
the CLI, which then stops the children in order: the proxy first (it flushes
its events to the ledger), the sandbox last.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

__all__ = [
    "ChildProcess",
    "ProcessError",
    "mitmdump_command",
    "mitmdump_executable",
    "start_proxy",
    "start_sandbox",
    "wait_for_ports",
    "write_sandbox_settings",
]

log = logging.getLogger(__name__)

ADDON_PATH = Path(__file__).resolve().parent.parent / "shadow" / "addon.py"


class ProcessError(RuntimeError):
    """A child process failed to start or stopped on its own."""


class ChildProcess:
    def __init__(self, name: str, args: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                list(args), stdout=self._log_file, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, env=env,
            )
        except OSError as exc:
            self._log_file.close()
            raise ProcessError(f"Can't start {name} ({args[0]}): {exc.strerror}") from exc

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise ProcessError(
                f"{self.name} exited with code {code}; its log is {self.log_path}:\n"
                + self.log_tail()
            )

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """Ask the process to stop (SIGTERM), then kill it after `timeout_s`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s; killing it", self.name, timeout_s)
                self.process.kill()
                self.process.wait(5)
        self._log_file.close()
        return self.process.returncode


def wait_for_ports(
    ports: Sequence[int], *, host: str = "127.0.0.1", timeout_s: float = 30.0,
    process: ChildProcess | None = None,
) -> None:
    """Wait until every port accepts a TCP connection."""
    deadline = time.monotonic() + timeout_s
    waiting = list(ports)
    while waiting:
        if process is not None:
            process.check_alive()
        port = waiting[0]
        try:
            with socket.create_connection((host, port), timeout=0.5):
                waiting.pop(0)
                continue
        except OSError:
            pass
        if time.monotonic() > deadline:
            name = process.name if process else "the service"
            raise ProcessError(f"{name} did not listen on {host}:{port} within {timeout_s:.0f} s")
        time.sleep(0.1)


def executable(name: str) -> str:
    """Return the program `name` installed beside this Python, else the one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise ProcessError(f"{name} not found; install cutover with `make install`.")
    return found


def mitmdump_executable() -> str:
    return executable("mitmdump")


def mitmdump_command(
    config_path: Path, mode_specs: Sequence[str], *, extra: Sequence[str] = ()
) -> list[str]:
    command = [mitmdump_executable(), "-s", str(ADDON_PATH),
               "--set", f"cutover_config={config_path}",
               "--set", "termlog_verbosity=warn",
               "--set", "flow_detail=0"]
    for spec in mode_specs:
        command += ["--mode", spec]
    return command + list(extra)


def start_proxy(
    config_path: Path, mode_specs: Sequence[str], ports: Sequence[int], log_path: Path,
    *, host: str = "127.0.0.1", timeout_s: float = 30.0,
) -> ChildProcess:
    child = ChildProcess("mitmdump", mitmdump_command(config_path, mode_specs), log_path)
    try:
        wait_for_ports(ports, host=host, timeout_s=timeout_s, process=child)
    except BaseException:  # Ctrl-C while waiting too: the caller never gets the child to stop
        child.stop(5)
        raise
    return child


def write_sandbox_settings(settings: Any, path: Path) -> str:
    """Write sandbox settings to `path` without the webhook signing secret, and return the secret.

    A run folder is evidence that people share, so the secret reaches the
    sandbox through its environment (`start_sandbox(..., webhook_secret=...)`).
    """
    fields = asdict(settings)
    secret = fields.pop("webhook_secret")
    path.write_text(json.dumps(fields, indent=2), encoding="utf-8")
    return secret


def start_sandbox(
    settings_path: Path, ports: Sequence[int], log_path: Path,
    *, host: str = "127.0.0.1", timeout_s: float = 30.0, webhook_secret: str | None = None,
) -> ChildProcess:
    """Start `python -m sandbox` with a settings file.

    A `webhook_secret` replaces the file's, passed in the environment.
    """
    from sandbox import WEBHOOK_SECRET_ENV

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if webhook_secret is not None:
        env[WEBHOOK_SECRET_ENV] = webhook_secret
    child = ChildProcess(
        "sandbox", [sys.executable, "-m", "sandbox", "--settings", str(settings_path)],
        log_path, env=env,
    )
    try:
        wait_for_ports(ports, host=host, timeout_s=timeout_s, process=child)
    except BaseException:  # Ctrl-C while waiting too: the caller never gets the child to stop
        child.stop(5)
        raise
    return child
