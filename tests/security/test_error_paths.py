"""Error messages leave out the secrets of the input that caused them.

The real commands get an unreachable PostgreSQL ledger whose URL carries a
password, and invalid configuration files that carry secrets. Their stdout,
stderr and the proxy's log are then scanned for the secrets, raw and encoded.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest

from cutover.processes import wait_for_ports
from cutover.topology import free_ports
from tests.security.scan import Needle, Scanner

pytestmark = pytest.mark.slow

CUTOVER = str(Path(sys.executable).parent / "cutover")
PASSWORD = "pg-error/seeded+K4v=8d1f06a3"
SECRET = "config-secret-seeded-7a90e2c4b1"


def _unreachable_url() -> str:
    """Return a PostgreSQL URL with a password, on a loopback port where nothing listens."""
    return f"postgresql://cutover:{quote(PASSWORD, safe='')}@127.0.0.1:{free_ports(1)[0]}/ledger"


def _run(arguments: list[str], cwd: Path, **options) -> subprocess.CompletedProcess:
    return subprocess.run([CUTOVER, *arguments], capture_output=True, cwd=cwd, timeout=120, **options)


def _findings(scanner: Scanner, completed: subprocess.CompletedProcess) -> list[str]:
    return [str(finding) for finding in scanner.scan_bytes(completed.stdout, "stdout")
            + scanner.scan_bytes(completed.stderr, "stderr")]


@pytest.mark.parametrize("command", [
    pytest.param(["report", "run-1"], id="report"),
    pytest.param(["compare", "run-1"], id="compare"),
    pytest.param(["ledger", "export", "run-1", "--out", "run.jsonl"], id="ledger-export"),
    pytest.param(["loadtest", "--target", "http://127.0.0.1:9/webhooks/orders/create",
                  "--peak-rate", "1", "--duration", "1s"], id="loadtest"),
])
def test_unreachable_ledger_error_hides_password(tmp_path, command):
    scanner = Scanner([Needle("ledger password", PASSWORD)])

    completed = _run([*command, "--ledger", _unreachable_url()], tmp_path,
                     env={"PATH": "/usr/bin:/bin", "CUTOVER_WEBHOOK_SECRET": "unused-in-this-test"})

    assert completed.returncode == 2, completed.stderr.decode(errors="replace")
    assert b"127.0.0.1" in completed.stderr
    assert not _findings(scanner, completed)


@pytest.mark.postgres
def test_empty_ledger_message_hides_password(tmp_path, postgres_url):
    from cutover.ledger import open_ledger

    url = postgres_url.replace("postgres@", f"postgres:{quote(PASSWORD, safe='')}@")
    open_ledger(url).dispose()  # the tables, and no run yet
    scanner = Scanner([Needle("ledger password", PASSWORD)])

    completed = _run(["report", "--ledger", url], tmp_path)

    assert completed.returncode == 2, completed.stderr.decode(errors="replace")
    assert b"holds no run yet" in completed.stderr
    assert not _findings(scanner, completed)


def _ingress_route(upstream: str) -> str:
    return ('[[route]]\nname = "ingress"\nrole = "ingress"\nlisten = 18080\n'
            f'upstream = "{upstream}"\nmirror_to = "http://127.0.0.1:18082"\n')


# Each configuration carries a secret and is invalid in one way.
INVALID_CONFIGS = {
    "toml-syntax": ("cutover.toml", f'[ledger]\nurl = "postgresql://cutover:{SECRET}@127.0.0.1/db"\nrun_id = \n'),
    "json-syntax": ("cutover.json", f'{{"ledger": {{"url": "postgresql://cutover:{SECRET}@127.0.0.1/db"}}, "route": ['),
    "ledger-scheme": ("cutover.toml", f'[ledger]\nurl = "postgres://cutover:{SECRET}@127.0.0.1/db"\n'),
    "unknown-key": ("cutover.toml", f'[ledger]\npassword = "{SECRET}"\n'),
    "upstream-scheme": ("cutover.toml", _ingress_route(f"ftp://shop:{SECRET}@127.0.0.1:21")),
    "upstream-credentials": ("cutover.toml", _ingress_route(f"http://shop:{SECRET}@127.0.0.1:18081")),
}


@pytest.mark.parametrize("case", list(INVALID_CONFIGS))
def test_invalid_config_error_hides_secret(tmp_path, case):
    name, content = INVALID_CONFIGS[case]
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    scanner = Scanner([Needle("secret in the configuration", SECRET)])

    completed = _run(["shadow", "--config", str(path), "--print-command"], tmp_path)

    assert completed.returncode == 2, completed.stdout.decode(errors="replace")
    assert b"error" in completed.stderr
    assert not _findings(scanner, completed)


def _wait_for_text(path: Path, text: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return True
        time.sleep(0.1)
    return False


class _Accept(BaseHTTPRequestHandler):
    """A legacy flow that accepts every webhook."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def legacy_flow():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Accept)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_proxy_with_unreachable_ledger_logs_no_password(tmp_path, legacy_flow):
    ingress, = free_ports(1)
    config = {
        "ledger": {"url": _unreachable_url(), "run_id": "unreachable"},
        "route": [{"name": "ingress", "role": "ingress", "listen": ingress,
                   "upstream": legacy_flow, "mirror_to": legacy_flow}],
    }
    config_path = tmp_path / "cutover.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    log_path = tmp_path / "shadow.log"
    scanner = Scanner([Needle("ledger password", PASSWORD)])

    with log_path.open("wb") as log_file:
        proxy = subprocess.Popen([CUTOVER, "shadow", "--config", str(config_path)], stdout=log_file,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp_path,
                                 start_new_session=True)
    try:
        wait_for_ports([ingress], timeout_s=30)
        request = urllib.request.Request(f"http://127.0.0.1:{ingress}/webhooks/orders/create",
                                         data=b'{"id": 1}', method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            status = response.status
        logged = _wait_for_text(log_path, "forwarding continues", 30)
    finally:
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(30)
    content = log_path.read_bytes()

    assert status == 200
    assert logged, content.decode(errors="replace")
    assert b"127.0.0.1" in content
    assert not scanner.scan_bytes(content, "log of cutover shadow")
