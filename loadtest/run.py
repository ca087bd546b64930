"""Run a load test: the sandbox when asked, the proxy, Locust, the wait and the figures.

Locust runs only as child processes (`locust -f loadtest/locustfile.py
--headless`), never in this process, because importing it patches the
standard library with gevent. With `workers > 0` the children are one
`--master` and that many `--worker` processes on loopback.

Every step is bounded: the profile ends, Locust gets `--run-time` with a
grace period, the flows get `settle_timeout_s` to drain, and the whole run
gets `overall_timeout_s`. Every child is stopped on the way out, the proxy
before the sandbox so that it flushes its events.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from cutover.demo import wait_until_settled
from cutover.ledger import finish_run, ledger_url_for, open_ledger, start_run
from cutover.processes import (
    ChildProcess,
    ProcessError,
    executable,
    mitmdump_command,
    start_proxy,
    start_sandbox,
    wait_for_ports,
    write_sandbox_settings,
)
from cutover.topology import Topology, free_ports
from loadtest.phases import LoadTestFigures, analyze_phases, read_order_logs, read_timeline
from loadtest.shapes import Profile
from sandbox.settings import WEBHOOK_PATH, SandboxSettings

__all__ = ["LoadTestError", "LoadTestOptions", "LoadTestResult", "new_run_id", "run_loadtest"]

log = logging.getLogger(__name__)

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
SECRET_ENV = "CUTOVER_WEBHOOK_SECRET"
# Seconds Locust may run past the profile: its own start-up, and users that
# finish their last request.
LOCUST_GRACE_S = 15.0
STOP_TIMEOUT_S = 10.0


class LoadTestError(RuntimeError):
    """The load test could not run to the end."""


@dataclass(frozen=True)
class LoadTestOptions:
    run_id: str
    profile: Profile
    runs_dir: Path = Path("runs")
    # With sandbox settings, the sandbox and a proxy in front of it are
    # started on free ports. Without, `proxy_config` starts the proxy of a
    # real topology, or `target_url` names an ingress already running.
    sandbox: SandboxSettings | None = None
    proxy_config: Path | None = None
    target_url: str | None = None
    ledger_url: str | None = None
    workers: int = 0
    # Workers on other machines that connect to the master by themselves;
    # the master then listens on `master_host`:`master_port` (0: a free port).
    remote_workers: int = 0
    master_host: str = "127.0.0.1"
    master_port: int = 0
    seed: int = 7
    user_period_s: float = 1.0
    bodies: Path | None = None
    settle_timeout_s: float = 60.0
    quiet_s: float = 1.5
    overall_timeout_s: float | None = None

    @property
    def deadline_s(self) -> float:
        if self.overall_timeout_s is not None:
            return self.overall_timeout_s
        return self.profile.duration_s + LOCUST_GRACE_S + self.settle_timeout_s + 60.0


@dataclass
class LoadTestResult:
    run_id: str
    folder: Path
    engine: Engine
    figures: LoadTestFigures
    settled: bool
    # Facts about the run for the report: targets, processes, proxy CPU.
    facts: dict[str, Any]
    locust_exit_code: int | None


def new_run_id() -> str:
    return f"load-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def locust_executable() -> str:
    try:
        return executable("locust")
    except ProcessError as exc:
        raise LoadTestError(str(exc)) from exc


def run_loadtest(options: LoadTestOptions, *, on_progress: Callable[[str], None] = lambda _m: None) -> LoadTestResult:
    """Run the whole load test and return its per-phase figures."""
    started = time.monotonic()
    folder = options.runs_dir / options.run_id
    locust_dir = folder / "locust"
    locust_dir.mkdir(parents=True, exist_ok=True)
    children: list[ChildProcess] = []
    try:
        plan = _start_targets(options, folder, children, on_progress)
        engine = plan.engine
        cpu_before = _cpu_seconds(plan.proxy)

        on_progress(f"running Locust: profile {options.profile.name}, {options.profile.duration_s:g} s")
        locust_code = _run_locust(options, plan, locust_dir, children, started)
        sent = read_order_logs(locust_dir)
        ok = sum(1 for order in sent if 200 <= order.status < 300)

        on_progress("waiting for both flows to settle")
        remaining = options.deadline_s - (time.monotonic() - started)
        settled = wait_until_settled(
            engine, options.run_id, expected=ok, timeout_s=max(1.0, min(options.settle_timeout_s, remaining)),
            quiet_s=options.quiet_s, check_alive=lambda: [child.check_alive() for child in plan.services],
            on_progress=on_progress,
        )
        cpu_after = _cpu_seconds(plan.proxy)
    finally:
        on_progress("stopping Locust, the proxy and the sandbox")
        for child in children:
            child.stop(STOP_TIMEOUT_S)

    finish_run(engine, options.run_id)
    timeline = read_timeline(locust_dir / "timeline.jsonl")
    start_wall = timeline[0]["at"] - timeline[0]["elapsed_s"]
    figures = analyze_phases(engine, options.run_id, options.profile, start_wall, sent)
    facts = {
        "target": plan.host + plan.webhook_path,
        "sandbox": "yes" if options.sandbox is not None else "no",
        "locust_workers": options.workers,
        "remote_locust_workers": options.remote_workers,
        "settled": settled,
        "locust_exit_code": locust_code,
    }
    if cpu_before is not None and cpu_after is not None:
        facts["proxy_cpu_s"] = round(cpu_after - cpu_before, 3)
        orders = max(1, figures.accounting.in_ledger)
        facts["proxy_cpu_ms_per_order"] = round(1000 * (cpu_after - cpu_before) / orders, 3)
    return LoadTestResult(options.run_id, folder, engine, figures, settled, facts, locust_code)


@dataclass
class _Plan:
    engine: Engine
    host: str
    webhook_path: str
    secret: str | None
    proxy: ChildProcess | None
    # Children whose death ends the run: sandbox and proxy.
    services: list[ChildProcess]


def _start_targets(
    options: LoadTestOptions, folder: Path, children: list[ChildProcess], on_progress: Callable[[str], None],
) -> _Plan:
    if options.sandbox is not None:
        return _start_sandbox_topology(options, folder, children, on_progress)
    if options.proxy_config is not None:
        return _start_configured_proxy(options, folder, children, on_progress)
    if not options.target_url or not options.ledger_url:
        raise LoadTestError("Without the sandbox, pass --config to start the proxy, or --target and --ledger "
                            "for a proxy that is already running.")
    base, path = _split_target(options.target_url)
    return _Plan(_open_run(options, options.ledger_url), base, path, os.environ.get(SECRET_ENV), None, [])


def _open_run(options: LoadTestOptions, ledger_url: str) -> Engine:
    """Open the ledger and record the run; call it before the proxy starts, or the proxy records it as a shadow run."""
    engine = open_ledger(ledger_url)
    start_run(engine, options.run_id, "loadtest", {
        "profile": options.profile.to_dict(), "workers": options.workers, "seed": options.seed,
        "user_period_s": options.user_period_s, "sandbox": options.sandbox is not None,
        "bodies": str(options.bodies) if options.bodies else None,
    })
    return engine


def _start_sandbox_topology(
    options: LoadTestOptions, folder: Path, children: list[ChildProcess], on_progress: Callable[[str], None],
) -> _Plan:
    ledger_url = options.ledger_url or ledger_url_for(folder)
    engine = _open_run(options, ledger_url)
    topology = Topology.on_free_ports(options.sandbox)
    settings = replace(topology.sandbox_settings(), seed=options.seed)
    settings_path = folder / "sandbox.json"
    webhook_secret = write_sandbox_settings(settings, settings_path)
    shadow = topology.shadow_config(run_id=options.run_id, ledger_url=ledger_url)
    shadow_path = folder / "shadow.json"
    shadow_path.write_text(json.dumps(shadow, indent=2), encoding="utf-8")

    on_progress("starting the sandbox")
    sandbox = start_sandbox(settings_path, topology.sandbox_ports, folder / "sandbox.log",
                            webhook_secret=webhook_secret)
    children.append(sandbox)
    on_progress("starting the shadow proxy")
    mode_specs = [f"reverse:{route['upstream']}@{route['listen']}" for route in shadow["route"]]
    proxy = start_proxy(shadow_path, mode_specs, topology.proxy_ports, folder / "proxy.log")
    children.insert(0, proxy)
    return _Plan(engine, topology.url(topology.ingress_port), WEBHOOK_PATH, settings.webhook_secret,
                 proxy, [proxy, sandbox])


def _start_configured_proxy(
    options: LoadTestOptions, folder: Path, children: list[ChildProcess], on_progress: Callable[[str], None],
) -> _Plan:
    from shadow.config import ConfigError, load_config

    try:
        config = load_config(options.proxy_config)
    except ConfigError as exc:
        raise LoadTestError(str(exc)) from exc
    ingress = [route for route in config.routes if route.role == "ingress"]
    if len(ingress) != 1:
        raise LoadTestError(f"{options.proxy_config} has {len(ingress)} ingress routes; the load test needs exactly one.")
    ledger_url = options.ledger_url or config.ledger_url or ledger_url_for(folder)
    engine = _open_run(options, ledger_url)

    on_progress("starting the shadow proxy")
    extra = ["--set", f"cutover_run_id={options.run_id}"]
    if ledger_url != config.ledger_url:
        # A URL from the configuration is left there: on the command line, a
        # password in it would show in every process listing.
        extra += ["--set", f"cutover_ledger={ledger_url}"]
    command = mitmdump_command(options.proxy_config.resolve(), config.mode_specs, extra=extra)
    proxy = ChildProcess("mitmdump", command, folder / "proxy.log")
    children.insert(0, proxy)
    ports = [route.listen_port for route in config.routes]
    wait_for_ports(ports, host=ingress[0].listen_host, timeout_s=30.0, process=proxy)
    host = ingress[0].listen_host
    base = f"http://{'[' + host + ']' if ':' in host else host}:{ingress[0].listen_port}"
    path = _split_target(options.target_url)[1] if options.target_url else WEBHOOK_PATH
    return _Plan(engine, base, path, os.environ.get(SECRET_ENV), proxy, [proxy])


def _split_target(url: str) -> tuple[str, str]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise LoadTestError(f"Invalid target URL {url!r}. Use the proxy's ingress, such as "
                            f"http://127.0.0.1:8080{WEBHOOK_PATH}.")
    return f"{parts.scheme}://{parts.netloc}", parts.path or WEBHOOK_PATH


def _run_locust(
    options: LoadTestOptions, plan: _Plan, out: Path, children: list[ChildProcess], started: float,
) -> int | None:
    """Start Locust (and its workers), wait for it to exit, return its exit code."""
    profile_path = out / "stages.toml"
    profile_path.write_text(_stages_toml(options.profile), encoding="utf-8")
    run_time = int(options.profile.duration_s + LOCUST_GRACE_S)
    common = [
        locust_executable(), "-f", str(LOCUSTFILE), "--headless", "--host", plan.host,
        "--cutover-stages", str(profile_path), "--cutover-seed", str(options.seed),
        "--cutover-user-period", str(options.user_period_s), "--cutover-out", str(out),
        "--cutover-webhook-path", plan.webhook_path, "--stop-timeout", str(int(STOP_TIMEOUT_S)),
        "--loglevel", "INFO",
    ]
    if options.bodies is not None:
        common += ["--cutover-bodies", str(options.bodies)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if plan.secret is not None:
        env[SECRET_ENV] = plan.secret

    main_args = [*common, "--run-time", f"{run_time}s", "--csv", str(out / "stats"), "--only-summary"]
    expected = options.workers + options.remote_workers
    port = options.master_port or free_ports(1, options.master_host)[0]
    if expected > 0:
        main_args += ["--master", "--master-bind-host", options.master_host, "--master-bind-port", str(port),
                      "--expect-workers", str(expected)]
        if options.remote_workers:
            log.info("Locust master of run %s waits for %d remote workers on %s:%d",
                     options.run_id, options.remote_workers, options.master_host, port)
    main = ChildProcess("locust", main_args, out / "locust.log", env=env)
    children.insert(0, main)
    for index in range(options.workers):
        worker_args = [*common, "--worker", "--master-host", _connect_host(options.master_host),
                       "--master-port", str(port)]
        children.insert(1, ChildProcess(f"locust worker {index}", worker_args, out / f"worker-{index}.log", env=env))

    deadline = started + options.deadline_s
    while main.process.poll() is None:
        for child in plan.services:
            child.check_alive()
        if time.monotonic() > deadline:
            raise LoadTestError(f"Locust did not finish within the overall timeout of {options.deadline_s:.0f} s; "
                                f"its log is {main.log_path}.")
        time.sleep(0.5)
    code = main.process.returncode
    if not (out / "timeline.jsonl").exists():
        raise LoadTestError(f"Locust exited with code {code} before the load shape ran; its log is "
                            f"{main.log_path}:\n{main.log_tail()}")
    log.info("Locust finished with exit code %s (run %s)", code, options.run_id)
    return code


def _connect_host(bind_host: str) -> str:
    """Return the address a local worker connects to for a master bound on `bind_host`."""
    return "127.0.0.1" if bind_host in ("0.0.0.0", "*", "") else bind_host


def _stages_toml(profile: Profile) -> str:
    lines = []
    for stage in profile.stages:
        lines += ["[[stage]]", f"name = {json.dumps(stage.name)}", f"duration = {stage.duration_s!r}",
                  f"start_rate = {stage.start_rate!r}", f"rate = {stage.end_rate!r}", ""]
    return "\n".join(lines)


def _cpu_seconds(child: ChildProcess | None) -> float | None:
    """Return the user plus system CPU time of a child process, from /proc (Linux)."""
    if child is None:
        return None
    try:
        fields = Path(f"/proc/{child.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # Fields 14 and 15 of proc(5) are utime and stime; the split starts at field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
