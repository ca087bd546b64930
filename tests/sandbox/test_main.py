"""`python -m sandbox`: start, ready line, clean stop on SIGTERM."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from sandbox.__main__ import apply_port_base, main
from sandbox.settings import SandboxSettings
from sandbox.stack import APP_NAMES

REPOSITORY = Path(__file__).resolve().parents[2]
READY_LIMIT_S = 30.0


def read_first_line(process: subprocess.Popen[str]) -> str:
    """Return the process's first stdout line, or fail after READY_LIMIT_S."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=READY_LIMIT_S)
    except queue.Empty:
        process.kill()
        pytest.fail(f"python -m sandbox printed no line within {READY_LIMIT_S} s")


def test_main_prints_ready_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    settings_file = tmp_path / "sandbox.json"
    settings_file.write_text(json.dumps({f"{name}_port": 0 for name in APP_NAMES}))
    command = [sys.executable, "-m", "sandbox", "--settings", str(settings_file), "--log-level", "WARNING"]
    with subprocess.Popen(command, cwd=REPOSITORY, stdout=subprocess.PIPE, text=True) as process:
        try:
            line = read_first_line(process)
            words = line.split()
            ports = dict(word.split("=") for word in words[2:])
            health = {}
            for name, port in ports.items():
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                    health[name] = response.status
            process.send_signal(signal.SIGTERM)
            returncode = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()

    assert words[:2] == ["sandbox", "ready"]
    assert list(ports) == list(APP_NAMES)
    assert all(port.isdigit() and int(port) > 0 for port in ports.values())
    assert health == dict.fromkeys(APP_NAMES, 200)
    assert returncode == 0


def test_main_rejects_invalid_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings_file = tmp_path / "sandbox.json"
    settings_file.write_text(json.dumps({"gated_workers": 0, "erp_error_rate": 2}))

    assert main(["--settings", str(settings_file)]) == 2
    error = capsys.readouterr().err
    assert "gated_workers must be 1 or more, but got 0" in error
    assert "erp_error_rate must be between 0 and 1, but got 2" in error


def test_main_rejects_unknown_setting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings_file = tmp_path / "sandbox.json"
    settings_file.write_text(json.dumps({"gated_wrokers": 3}))

    assert main(["--settings", str(settings_file)]) == 2
    assert "gated_wrokers" in capsys.readouterr().err


def test_port_base_assigns_six_ports() -> None:
    settings = apply_port_base(SandboxSettings(), 20000)

    assert settings.storefront_port == 20000
    assert settings.legacy_port == 20001
    assert settings.gated_port == 20002
    assert settings.erp_port == 20003
    assert settings.erp_candidate_port == 20004
    assert settings.email_port == 20005


def test_port_base_out_of_range_raises() -> None:
    with pytest.raises(ValueError, match="--port-base must be between 1 and 65530, but got 65531"):
        apply_port_base(SandboxSettings(), 65531)
