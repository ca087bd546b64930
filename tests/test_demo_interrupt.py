"""`cutover demo` stops every process it started when interrupted with Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CUTOVER = str(Path(sys.executable).parent / "cutover")


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command_line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in command_line:
            found.append(int(entry.name))
    return found


def _wait_for(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_demo_interrupt_stops_children(tmp_path):
    runs = tmp_path / "runs"
    demo = subprocess.Popen(
        [CUTOVER, "demo", "--runs-dir", str(runs), "--reports-dir", str(tmp_path / "reports"),
         "--orders", "400", "--rate", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # Python ignores SIGINT when its parent did; the test wants the
        # terminal's behaviour.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        # Both children name a file inside the run's folder on their command line.
        inside_runs = str(runs) + os.sep
        started = _wait_for(lambda: len(_processes_mentioning(inside_runs)) >= 2, 60)
        assert started, "the sandbox and the proxy did not start"
        time.sleep(1.0)
        demo.send_signal(signal.SIGINT)
        output, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()

    assert demo.returncode == 130, output
    assert "every process the demo started was stopped" in output
    assert _processes_mentioning(inside_runs) == []
    assert os.path.exists(next(runs.iterdir()) / "ledger.sqlite")
