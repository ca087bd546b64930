"""`cutover loadtest`: holiday-scale load through the shadow proxy, with a report per load phase.

Locust runs in child processes only; this module never imports it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["loadtest"]

log = logging.getLogger(__name__)

console = Console()
errors = Console(stderr=True)
EXIT_ERROR = 2
# Environment variable with the webhook signing secret of a real shop; never
# an option, so that it stays out of shell history and process lists.
SECRET_ENV = "CUTOVER_WEBHOOK_SECRET"


def _fail(message: str) -> typer.Exit:
    errors.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_ERROR)


def loadtest(
    profile: Annotated[str, typer.Option(help="Load profile: steady, bfcm or flash-sale.")] = "bfcm",
    peak_rate: Annotated[float | None, typer.Option(min=0.01, help="Peak arrival rate in webhooks per second. "
                                                    "Default with --sandbox: 50. Required without it.")] = None,
    duration: Annotated[str | None, typer.Option(help="Length of the load, such as 90s or 3m. "
                                                 "Default with --sandbox: 60s. Required without it.")] = None,
    stages: Annotated[Path | None, typer.Option(help="TOML file of stage tables (name, duration, rate "
                                                "in webhooks/s, optional start_rate); replaces --profile, "
                                                "--peak-rate and --duration.")] = None,
    sandbox: Annotated[bool, typer.Option(help="Start the built-in sandbox and a proxy in front of it on "
                                          "free loopback ports.")] = False,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Shadow configuration (TOML or JSON) "
                                                "of a real topology; the command starts that proxy.")] = None,
    target: Annotated[str | None, typer.Option(help="Webhook URL of a proxy ingress that already runs "
                                               "(with --ledger); with --config, only its path is used.")] = None,
    ledger: Annotated[str | None, typer.Option(help="Ledger URL the proxy records into. "
                                               "Default: runs/<run id>/ledger.sqlite.")] = None,
    run_id: Annotated[str | None, typer.Option(help="Run id; must match the running proxy's with --target. "
                                               "Default: a new load-<time> id.")] = None,
    workers: Annotated[int, typer.Option(min=0, max=64, help="Locust worker processes on loopback under one "
                                         "master; 0 runs Locust as one process.")] = 0,
    remote_workers: Annotated[int, typer.Option(min=0, max=1024, help="Locust workers on other machines "
                                                "that connect to the master (see --master-bind); the load "
                                                "starts when all of them are connected.")] = 0,
    master_bind: Annotated[str, typer.Option(help="HOST:PORT the Locust master listens on for workers; "
                                             "port 0 picks a free one. Bind a non-loopback address only "
                                             "for --remote-workers.")] = "127.0.0.1:0",
    user_period: Annotated[float, typer.Option(min=0.05, help="Seconds between two orders of one Locust "
                                               "user; users = rate * this.")] = 1.0,
    bodies: Annotated[Path | None, typer.Option(help="JSON-lines file of captured orders to send instead of "
                                                "generated ones; each send gets a fresh order id.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the order generator. Default: drawn per run, "
                                             "so that a real ERP never sees an order id twice.")] = None,
    erp_concurrency: Annotated[int, typer.Option(min=1, help="Sandbox ERP: requests in flight before it "
                                                 "answers 429. The gated flow runs 8 workers, so a limit "
                                                 "below 8 makes it retry on 429.")] = 8,
    erp_latency: Annotated[float, typer.Option(min=0, help="Sandbox ERP: base latency in ms.")] = 50.0,
    erp_latency_per_inflight: Annotated[float, typer.Option(min=0, help="Sandbox ERP: ms added per request "
                                                            "in flight.")] = 25.0,
    settle_timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for both flows to finish "
                                                  "after the load.")] = 60.0,
    timeout: Annotated[float | None, typer.Option(min=1, help="Seconds after which the whole run stops. "
                                                  "Default: duration + settle timeout + 75.")] = None,
    min_orders: Annotated[int, typer.Option(min=1, help="Fewest compared orders for a GO verdict.")] = 100,
    runs_dir: Annotated[Path, typer.Option(help="Folder that holds one sub-folder per run.")] = Path("runs"),
    reports_dir: Annotated[Path, typer.Option(help="Folder for the reports, one sub-folder per run.")] = Path("reports"),
) -> None:
    """Drive a holiday-scale load through the shadow proxy and report each load phase."""
    import secrets

    from compare import Criteria, analyze, write_reports
    from cutover.ledger import LedgerError
    from cutover.processes import ProcessError
    from loadtest.report import write_loadtest_report
    from loadtest.run import LoadTestError, LoadTestOptions, new_run_id, run_loadtest
    from loadtest.shapes import ProfileError, build_profile, load_stages, parse_duration
    from sandbox.settings import SandboxSettings

    if not sandbox and stages is None and (peak_rate is None or duration is None):
        raise _fail("Without --sandbox, give --peak-rate and --duration (or --stages) explicitly: "
                    "the load goes to a real endpoint.")
    if not sandbox and config is None and (target is None or ledger is None):
        raise _fail("Without --sandbox, pass --config to start the proxy, or --target and --ledger "
                    "for a proxy that is already running.")
    if not sandbox and not os.environ.get(SECRET_ENV):
        raise _fail(f"Without --sandbox, set {SECRET_ENV} to the shop's webhook signing secret, "
                    "so that the flows accept the signed webhooks.")
    try:
        if stages is not None:
            load = load_stages(stages)
        else:
            load = build_profile(profile, peak_rate or 50.0, parse_duration(duration or "60s"))
    except ProfileError as exc:
        raise _fail(str(exc)) from exc

    master_host, _, master_port = master_bind.rpartition(":")
    if not master_host or not master_port.isdigit() or int(master_port) > 65535:
        raise _fail(f"Invalid --master-bind {master_bind!r}. Use HOST:PORT, such as 0.0.0.0:5557.")
    if remote_workers and int(master_port) == 0:
        raise _fail("--remote-workers needs a fixed port in --master-bind, such as 0.0.0.0:5557, "
                    "so that the workers know where to connect.")

    if bodies is not None and not bodies.is_file():
        raise _fail(f"--bodies {bodies} not found or not a file. Give a JSON-lines file of "
                    "captured orders, such as one `cutover replay` reads.")
    run_id = run_id or new_run_id()
    settings = None
    if sandbox:
        settings = replace(SandboxSettings(), erp_concurrency_limit=erp_concurrency,
                           erp_base_latency_ms=erp_latency, erp_latency_per_inflight_ms=erp_latency_per_inflight)
    options = LoadTestOptions(
        run_id=run_id, profile=load, runs_dir=runs_dir, sandbox=settings, proxy_config=config,
        target_url=target, ledger_url=ledger, workers=workers, remote_workers=remote_workers,
        master_host=master_host.strip("[]"), master_port=int(master_port),
        seed=seed if seed is not None else secrets.randbelow(2**31), user_period_s=user_period,
        bodies=bodies, settle_timeout_s=settle_timeout, overall_timeout_s=timeout,
    )

    console.print(f"cutover loadtest: run [bold]{run_id}[/bold], profile {load.name}, "
                  f"{load.duration_s:g} s, peak {load.peak_rate:g} webhooks/s", highlight=False)
    try:
        with console.status("starting") as status:
            result = run_loadtest(options, on_progress=lambda text: status.update(text))
        analysis = analyze(result.engine, run_id, criteria=Criteria(min_orders=min_orders))
    except (LoadTestError, ProcessError, LedgerError, LookupError, OSError) as exc:
        raise _fail(str(exc)) from exc
    except KeyboardInterrupt:
        errors.print("Interrupted; every process the load test started was stopped.")
        raise typer.Exit(130) from None

    folder = reports_dir / run_id
    paths = write_reports(analysis, folder)
    paths += write_loadtest_report(result.figures, folder, {**result.facts, "verdict": analysis.verdict.value})
    _print_phases(result)
    if not result.settled:
        errors.print("[yellow]warning:[/yellow] the flows had not settled when the wait ended; "
                     "unfinished orders show as pending.")
    console.print(f"Verdict: {analysis.verdict.value}")
    console.print("Reports: " + ", ".join(str(path) for path in paths), highlight=False)
    if result.figures.accounting.unaccounted:
        errors.print(f"[red]{result.figures.accounting.unaccounted} orders sent are neither in the ledger "
                     "nor in a loss counter.[/red]")
        raise typer.Exit(1)
    raise typer.Exit(analysis.exit_code)


def _print_phases(result) -> None:
    from rich.table import Table

    table = Table(title=f"Load phases of run {result.run_id}")
    for column in ("phase", "target/s", "sent/s", "shortfall", "orders", "legacy open", "candidate open",
                   "legacy p99 confirm", "candidate p99 confirm", "throttles", "pending notices",
                   "mirror losses"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    for phase in result.figures.phases:
        def p99(flow) -> str:
            value = flow.time_to_confirmation.p99_ms
            return "n/a" if value is None else f"{value:,.0f} ms"
        table.add_row(
            phase.name, f"{phase.target_rate:g}", f"{phase.offered_rate:.1f}", str(phase.shortfall),
            str(phase.orders), str(phase.legacy.open_gaps), str(phase.candidate.open_gaps),
            p99(phase.legacy), p99(phase.candidate),
            str(phase.legacy.erp_throttles + phase.candidate.erp_throttles),
            str(phase.candidate.pending_notices), str(phase.mirror_losses),
        )
    console.print(table)
