"""Every listener cutover starts binds 127.0.0.1 unless the configuration names another address.

`cutover replay` is not here: it only sends, and opens no listener.

Each test starts the real processes (`cutover shadow`, `python -m sandbox`,
the demo's sandbox and proxy, the load test's Locust master) and reads the
addresses their sockets listen on from /proc/net/tcp and tcp6. Explicit
addresses are other loopback addresses (127.0.0.2, 127.0.0.3, ::1), so no
test listens beyond this machine.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from cutover.demo import DemoOptions, run_parallel
from cutover.privacy import REDACTION_KEY_ENV
from cutover.processes import ChildProcess, wait_for_ports
from cutover.topology import free_ports
from loadtest.run import LoadTestOptions, run_loadtest
from loadtest.shapes import build_profile
from sandbox.settings import SandboxSettings
from tests.security.procs import ListenerSampler, descendants, listening_sockets
from tests.security.scan import Needle, Scanner, files_under

pytestmark = pytest.mark.slow

CUTOVER = str(Path(sys.executable).parent / "cutover")
LOOPBACK = "127.0.0.1"
LOADTEST_SECRET = "loadtest-signing/seeded+5c2e81f0"
LOADTEST_REDACTION_KEY = "loadtest-redaction/seeded+0b7d43a9"


def _routes(listens: list[object], closed_port: int) -> list[dict[str, object]]:
    """Return an ingress and two taps listening on `listens`, all pointing at a closed port."""
    upstream = f"http://127.0.0.1:{closed_port}"
    return [
        {"name": "ingress", "role": "ingress", "listen": listens[0], "upstream": upstream,
         "mirror_to": upstream},
        {"name": "legacy-erp", "role": "erp", "listen": listens[1], "upstream": upstream},
        {"name": "candidate-email", "role": "email", "flow": "candidate", "listen": listens[2],
         "upstream": upstream, "quarantine": True},
    ]


def _start_shadow(tmp_path: Path, config: dict[str, object], *options: str) -> subprocess.Popen:
    path = tmp_path / "cutover.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    with (tmp_path / "shadow.out").open("wb") as output:
        return subprocess.Popen([CUTOVER, "shadow", "--config", str(path), "--no-status", *options],
                                stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=tmp_path, start_new_session=True)


def _listeners_of(process: subprocess.Popen, ports: list[tuple[str, int]], tmp_path: Path) -> set:
    """Wait until every (host, port) accepts, then return what the process tree listens on."""
    try:
        for host, port in ports:
            wait_for_ports([port], host=host, timeout_s=30)
        return listening_sockets(descendants(process.pid) | {process.pid})
    except Exception:
        print((tmp_path / "shadow.out").read_text(errors="replace"))
        raise
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


@pytest.mark.parametrize("metrics_from", ["config", "option"])
def test_shadow_binds_loopback_by_default(tmp_path, metrics_from):
    *ports, metrics, closed = free_ports(5)
    config: dict[str, object] = {
        "ledger": {"url": f"sqlite:///{tmp_path / 'ledger.sqlite'}", "run_id": "binding"},
        "route": _routes(ports, closed),
    }
    options: list[str] = []
    if metrics_from == "config":
        config["metrics"] = {"listen": metrics}
    else:
        options = ["--metrics", str(metrics)]

    process = _start_shadow(tmp_path, config, *options)
    listeners = _listeners_of(process, [(LOOPBACK, port) for port in [*ports, metrics]], tmp_path)

    assert listeners == {(LOOPBACK, port) for port in [*ports, metrics]}


def test_shadow_honours_explicit_addresses(tmp_path):
    ingress, erp, email, metrics, closed = free_ports(5)
    config = {
        "ledger": {"url": f"sqlite:///{tmp_path / 'ledger.sqlite'}", "run_id": "binding"},
        "route": _routes([f"127.0.0.2:{ingress}", f"[::1]:{erp}", f"127.0.0.1:{email}"], closed),
    }

    process = _start_shadow(tmp_path, config, "--metrics", f"127.0.0.3:{metrics}")
    expected = {("127.0.0.2", ingress), ("::1", erp), (LOOPBACK, email), ("127.0.0.3", metrics)}
    listeners = _listeners_of(process, sorted(expected), tmp_path)

    assert listeners == expected


def _sandbox_ports(settings: SandboxSettings) -> list[int]:
    return [settings.storefront_port, settings.legacy_port, settings.gated_port,
            settings.erp_port, settings.erp_candidate_port, settings.email_port]


@pytest.mark.parametrize("host", [None, "127.0.0.2"], ids=["default", "explicit"])
def test_sandbox_binds_loopback_unless_told(tmp_path, host):
    ports = free_ports(6)
    fields = dict(zip(("storefront_port", "legacy_port", "gated_port", "erp_port",
                       "erp_candidate_port", "email_port"), ports, strict=True))
    if host is not None:
        fields["host"] = host
    settings_path = tmp_path / "sandbox.json"
    settings_path.write_text(json.dumps(fields), encoding="utf-8")
    expected_host = host or LOOPBACK

    sandbox = ChildProcess("sandbox", [sys.executable, "-m", "sandbox", "--settings", str(settings_path)],
                           tmp_path / "sandbox.log")
    try:
        wait_for_ports(ports, host=expected_host, timeout_s=30, process=sandbox)
        listeners = listening_sockets([sandbox.process.pid])
    finally:
        sandbox.stop()

    assert listeners == {(expected_host, port) for port in ports}


def test_demo_binds_loopback(tmp_path):
    seen: dict[str, object] = {}
    sampler = ListenerSampler()

    def look(topology) -> None:
        sampler.sample()
        seen["ports"] = set(topology.proxy_ports) | set(topology.sandbox_ports)

    sandbox = replace(SandboxSettings(), legacy_poll_interval_s=0.2)
    options = DemoOptions(run_id="binding", runs_dir=tmp_path / "runs", orders=3, burst=0,
                          rate_per_s=50.0, settle_timeout_s=30.0, quiet_s=0.5, sandbox=sandbox)
    result = run_parallel(options, on_settled=look)
    result.engine.dispose()
    listeners = sampler.all_listeners()

    assert {port for _, port in listeners} >= seen["ports"]
    assert {host for host, _ in listeners} == {LOOPBACK}


@pytest.fixture(scope="module")
def loadtest_run(tmp_path_factory):
    """Run a short load test with a Locust master and one worker, watching its processes.

    The sandbox's signing secret and the redaction key are seeded, so the
    run's files can be scanned for them too.
    """
    folder = tmp_path_factory.mktemp("loadtest")
    profile = build_profile("steady", 4.0, 3.0)
    sandbox = replace(SandboxSettings(), legacy_poll_interval_s=0.2, webhook_secret=LOADTEST_SECRET)
    options = LoadTestOptions(run_id="binding-load", profile=profile, runs_dir=folder / "runs",
                              sandbox=sandbox, workers=1, settle_timeout_s=15.0, quiet_s=0.5)

    with pytest.MonkeyPatch.context() as patch, ListenerSampler() as sampler:
        patch.setenv(REDACTION_KEY_ENV, LOADTEST_REDACTION_KEY)
        result = run_loadtest(options)
    result.engine.dispose()
    return sampler, result


def test_loadtest_master_binds_loopback(loadtest_run):
    sampler, _ = loadtest_run
    masters = [pid for pid, line in sampler.command_lines.items()
               if b"locust" in line and b"--master" in line.split()]
    master_listeners = set().union(*(sampler.listeners.get(pid, set()) for pid in masters))

    assert masters
    assert master_listeners
    assert {host for host, _ in sampler.all_listeners()} == {LOOPBACK}


def test_loadtest_files_hold_no_secret(loadtest_run):
    _, result = loadtest_run
    files = files_under(result.folder)
    scanner = Scanner([Needle("webhook signing secret", LOADTEST_SECRET),
                       Needle(REDACTION_KEY_ENV, LOADTEST_REDACTION_KEY)])

    findings = scanner.scan_files(files)

    assert {path.name for path in files} >= {"sandbox.json", "proxy.log", "locust.log", "ledger.sqlite"}
    assert result.figures.accounting.in_ledger > 0
    assert not findings, "\n".join(map(str, findings))
