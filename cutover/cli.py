"""The `cutover` command line.

Heavy parts load inside the commands that need them: mitmproxy runs in its
own `mitmdump` process, and Locust is never imported here.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from cutover.commands.ledger import ledger_app
from cutover.commands.loadtest import loadtest as loadtest_command
from cutover.commands.replay import replay as replay_command
from cutover.commands.report_options import (
    AaOption,
    CompareConfigOption,
    FormatOption,
    OrdersExportKeyOption,
    OrdersExportOption,
    WorkersOption,
)

app = typer.Typer(
    name="cutover",
    help="Parallel-run shadow and cutover harness for the storefront-to-ERP order handoff.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)

EXIT_ERROR = 2

RunsDir = Annotated[
    Path, typer.Option("--runs-dir", help="Folder that holds one sub-folder per run.")
]
LedgerOption = Annotated[
    str | None,
    typer.Option(
        "--ledger",
        help="Ledger URL (sqlite:///path or postgresql://host/db) or SQLite file path. "
        "Default: runs/<run id>/ledger.sqlite.",
    ),
]
RunArgument = Annotated[
    str | None,
    typer.Argument(help="Run id. Default: the newest run under --runs-dir."),
]
MinOrders = Annotated[
    int, typer.Option("--min-orders", min=1, help="Fewest compared orders for a GO verdict.")
]
MinParity = Annotated[
    float,
    typer.Option("--min-parity", min=0.0, max=1.0,
                 help="Lowest share of orders whose ERP payloads match, from 0 to 1."),
]


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


def fail(message: str) -> typer.Exit:
    # The message is escaped: it quotes TOML tables, regexes and order keys,
    # whose brackets rich would otherwise take for markup.
    errors.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_ERROR)


def newest_run(runs_dir: Path) -> str:
    runs = sorted(
        (path for path in runs_dir.glob("*") if (path / "ledger.sqlite").exists()),
        key=lambda path: path.stat().st_mtime,
    )
    if not runs:
        raise fail(f"No run found under {runs_dir}/. Run `cutover demo` or pass a run id.")
    return runs[-1].name


SQLITE_HEADER = b"SQLite format 3\x00"


def open_run_ledger(run: str | None, ledger: str | None, runs_dir: Path):
    """Return (run id, ledger engine) for a command that reads a run.

    With --ledger the run defaults to the ledger's newest run; without it,
    to the newest run folder under --runs-dir.
    """
    from cutover.ledger import LedgerError, open_ledger, safe_url

    if ledger is None:
        run_id = run or newest_run(runs_dir)
        url = _sqlite_url(runs_dir / run_id / "ledger.sqlite")
    else:
        url = ledger if "://" in ledger else _sqlite_url(Path(ledger))
    try:
        engine = open_ledger(url, create=False)
        if ledger is not None and run is None:
            run = newest_run_id(engine)
            if run is None:
                raise fail(f"The ledger {safe_url(ledger)} holds no run yet.")
        return run or run_id, engine
    except LedgerError as exc:
        raise fail(str(exc)) from exc


def _port_free(host: str, port: int) -> bool:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def newest_run_id(engine) -> str | None:
    """Return the id of the ledger's most recently started run, or None."""
    from sqlalchemy.exc import SQLAlchemyError
    from sqlmodel import Session, select

    from cutover.ledger import Run

    try:
        with Session(engine) as session:
            return session.exec(select(Run.id).order_by(Run.started_at.desc()).limit(1)).first()
    except SQLAlchemyError as exc:
        raise fail(f"Can't read the runs of the ledger: {exc.__class__.__name__}. "
                   "Is it a cutover ledger?") from exc


def _sqlite_url(path: Path) -> str:
    """Check that `path` is a SQLite file before anything opens (and so changes) it."""
    if path.is_dir():
        path = path / "ledger.sqlite"
    if not path.exists():
        raise fail(f"Ledger file {path} not found. Pass --ledger with a SQLite file or a URL.")
    with path.open("rb") as handle:
        if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise fail(f"{path} is not a SQLite ledger (empty, or another kind of file). "
                       "Pass the ledger.sqlite of a run folder, or a postgresql:// URL.")
    return f"sqlite:///{path.resolve()}"


@app.command()
def demo(
    orders: Annotated[int, typer.Option(min=1, max=100_000, help="Orders the sandbox storefront sends.")] = 300,
    burst: Annotated[int, typer.Option(min=0, help="Orders of those sent at the end all at once.")] = 100,
    rate: Annotated[float, typer.Option(min=0.1, help="Orders per second before the burst.")] = 40.0,
    seed: Annotated[int, typer.Option(help="Seed of the order generator and the simulators.")] = 7,
    poll_interval: Annotated[float, typer.Option(min=0.05, help="Seconds between the legacy flow's ERP sync runs.")] = 3.0,
    pending_sla: Annotated[float, typer.Option(min=0.05, help="Seconds the gated flow waits for the ERP before a pending-status email.")] = 2.0,
    faulty_candidate: Annotated[int, typer.Option(min=0, help="Make the gated flow confirm before the ERP acknowledgement on every Nth order (0: a correct flow).")] = 0,
    settle_timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for both flows to finish after the last order.")] = 90.0,
    min_orders: MinOrders = 100,
    min_parity: MinParity = 0.999,
    runs_dir: RunsDir = Path("runs"),
    reports_dir: Annotated[Path, typer.Option(help="Folder for the reports, one sub-folder per run.")] = Path("reports"),
) -> None:
    """Run a whole parallel run on the built-in sandbox and print the readiness verdict."""
    from compare import Criteria, analyze, write_reports
    from cutover.demo import DemoOptions, run_parallel
    from cutover.ledger import LedgerError
    from cutover.processes import ProcessError
    from cutover.run_ids import new_run_id
    from sandbox.settings import SandboxSettings

    if burst > orders:
        raise fail(f"--burst {burst} is more than --orders {orders}; lower it.")
    run_id = new_run_id()
    sandbox = replace(
        SandboxSettings(), seed=seed, legacy_poll_interval_s=poll_interval,
        gated_pending_sla_s=pending_sla, gated_confirm_early_every=faulty_candidate,
    )
    options = DemoOptions(run_id=run_id, runs_dir=runs_dir, orders=orders, burst=burst,
                          rate_per_s=rate, seed=seed, settle_timeout_s=settle_timeout,
                          sandbox=sandbox)
    console.print(f"cutover demo: run [bold]{run_id}[/bold]")
    try:
        with console.status("starting") as status:
            result = run_parallel(options, on_progress=lambda text: status.update(text))
    except (ProcessError, LedgerError) as exc:
        raise fail(str(exc)) from exc
    except KeyboardInterrupt:
        errors.print("Interrupted; every process the demo started was stopped.")
        raise typer.Exit(130) from None

    if result.send_failures:
        errors.print(f"[yellow]warning:[/yellow] {sum(result.send_failures.values())} webhooks "
                     f"were not accepted: {result.send_failures}")
    if not result.settled:
        errors.print("[yellow]warning:[/yellow] the flows had not settled when the wait ended; "
                     "unfinished orders show as pending in the report.")

    analysis = analyze(result.engine, run_id,
                       criteria=Criteria(min_orders=min_orders, min_parity=min_parity))
    paths = write_reports(analysis, reports_dir / run_id, ("md", "json", "html"))
    print_analysis(analysis)
    console.print("Reports: " + ", ".join(str(path) for path in paths))
    console.print(f"Ledger:  {result.folder / 'ledger.sqlite'}")
    raise typer.Exit(analysis.exit_code)


@app.command()
def shadow(
    config: Annotated[Path, typer.Option("--config", "-c", help="Shadow configuration file (TOML or JSON) with the routes.")],
    ledger: Annotated[str | None, typer.Option(help="Ledger URL; overrides the configuration. Default: runs/<run id>/ledger.sqlite.")] = None,
    run_id: Annotated[str | None, typer.Option(help="Run id to record under; overrides the configuration.")] = None,
    instance: Annotated[str | None, typer.Option(help="Id of this proxy instance, recorded with every event.")] = None,
    metrics: Annotated[str | None, typer.Option(help="Serve Prometheus metrics on 'host:port' or a port (host 127.0.0.1); overrides the configuration.")] = None,
    status: Annotated[bool, typer.Option(help="Show a one-line live status: webhooks, mirror results, open gaps per flow, ledger lag.")] = True,
    print_command: Annotated[bool, typer.Option(help="Print the mitmdump command line and exit.")] = False,
) -> None:
    """Run the shadow proxy (mitmdump with the cutover addon) in the foreground."""
    from cutover.processes import ProcessError, mitmdump_command
    from shadow.config import (
        ConfigError,
        check_ledger_url,
        check_run_id,
        load_config,
        parse_listen,
    )
    from shadow.modes import read_mode

    try:
        parsed = load_config(config)
        mode = read_mode(config)
        if ledger:
            check_ledger_url(ledger, "--ledger")
        if run_id:
            check_run_id(run_id, "--run-id")
        if metrics:
            parse_listen(metrics, "--metrics")
        extra = []
        for option, value in (("cutover_ledger", ledger), ("cutover_run_id", run_id),
                              ("cutover_instance", instance), ("cutover_metrics", metrics)):
            if value:
                extra += ["--set", f"{option}={value}"]
        if status:
            extra += ["--set", "cutover_status=true"]
        command = mitmdump_command(config.resolve(), parsed.mode_specs, extra=extra)
    except (ConfigError, ProcessError) as exc:
        raise fail(str(exc)) from exc

    if print_command:
        console.print(" ".join(command), highlight=False, soft_wrap=True, markup=False)
        return
    busy = [route for route in parsed.routes if not _port_free(route.listen_host, route.listen_port)]
    if busy:
        raise fail("Port(s) already in use: " + ", ".join(
            f"{route.listen_host}:{route.listen_port} (route {route.name!r})" for route in busy
        ) + ". Stop what listens there or change `listen` in the configuration.")
    for route in parsed.routes:
        console.print(f"{route.name:>18}: {route.listen_host}:{route.listen_port} -> {route.upstream}"
                      + (f" (mirror to {route.mirror_to})" if route.mirror_to else "")
                      + (" [quarantined]" if route.quarantine else ""), highlight=False, markup=False)
        if route.role == "email" and route.flow == "candidate" and not route.quarantine:
            errors.print(f"warning: route {route.name!r} forwards the candidate's emails to "
                         f"{route.upstream}; customers may get them. Set quarantine = true "
                         "during a parallel run.", markup=False, highlight=False)
    console.print(f"mode {mode}; send SIGHUP to pid {os.getpid()} to re-read it", markup=False,
                  highlight=False)
    sys.stdout.flush()
    os.execv(command[0], command)


@app.command()
def compare(
    run: RunArgument = None,
    ledger: LedgerOption = None,
    order: Annotated[str | None, typer.Option(help="Show this order's timeline in both flows.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Maximum number of orders listed.")] = 20,
    workers: WorkersOption = None,
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Join a run's events per order and show the outcome per flow."""
    from compare import analyze, inspect_order, order_timeline
    from cutover.ledger import LedgerError

    run_id, engine = open_run_ledger(run, ledger, runs_dir)
    try:
        if order:
            events = order_timeline(engine, run_id, order)
            if not events:
                raise fail(f"No events for order {order!r} in run {run_id!r}. Order keys are "
                           "stored as text, as the storefront sends them (for Shopify, the "
                           "numeric order id).")
            print_timeline(events, order)
            print_order_findings(inspect_order(engine, run_id, order))
            return
        analysis = analyze(engine, run_id, workers=workers)
    except (LedgerError, LookupError) as exc:
        raise fail(str(exc)) from exc
    print_analysis(analysis, order_limit=limit)


@app.command()
def report(
    run: RunArgument = None,
    ledger: LedgerOption = None,
    out: Annotated[Path | None, typer.Option(help="Folder for the reports. Default: reports/<run id>/.")] = None,
    min_orders: Annotated[int | None, typer.Option("--min-orders", min=1, help="Fewest compared orders for a GO verdict. Default: --compare-config's min_orders, else 100.")] = None,
    min_parity: Annotated[float | None, typer.Option("--min-parity", min=0.0, max=1.0, help="Lowest share of orders whose ERP payloads match, from 0 to 1. Default: --compare-config's min_parity, else 0.999.")] = None,
    compare_config: CompareConfigOption = None,
    orders_export: OrdersExportOption = None,
    orders_export_key: OrdersExportKeyOption = None,
    report_format: FormatOption = "md,json,html,junit",
    aa: AaOption = False,
    workers: WorkersOption = None,
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Write the readiness report of a run; the exit code is the verdict (0 GO, 1 NO-GO, 2 otherwise)."""
    from compare import analyze, write_reports
    from cutover.commands.report_options import (
        ReportOptionError,
        build_analysis_inputs,
        parse_formats,
        write_aa_calibration,
    )
    from cutover.ledger import LedgerError

    try:
        formats = parse_formats(report_format)
        inputs = build_analysis_inputs(compare_config, orders_export, orders_export_key,
                                       min_orders=min_orders, min_parity=min_parity)
    except ReportOptionError as exc:
        raise fail(str(exc)) from exc
    run_id, engine = open_run_ledger(run, ledger, runs_dir)
    folder = out or Path("reports") / run_id
    try:
        if aa:
            paths = write_aa_calibration(engine, run_id, inputs, folder)
            console.print("Noise calibration: " + ", ".join(str(path) for path in paths))
            return
        analysis = analyze(engine, run_id, criteria=inputs.config.criteria,
                           normalisation=inputs.config.normalisation,
                           storefront_orders=inputs.storefront_orders, workers=workers)
    except (LedgerError, LookupError) as exc:
        raise fail(str(exc)) from exc
    paths = write_reports(analysis, folder, formats)
    print_analysis(analysis)
    console.print("Reports: " + ", ".join(str(path) for path in paths))
    raise typer.Exit(analysis.exit_code)


app.command("loadtest")(loadtest_command)
app.command("replay")(replay_command)
app.add_typer(ledger_app, name="ledger")


def print_analysis(analysis, order_limit: int = 10) -> None:
    from cutover.report_view import render_analysis

    render_analysis(console, analysis, order_limit=order_limit)


def print_order_findings(row) -> None:
    if row is None:
        return
    def gap(value: float | None) -> str:
        return "none" if value is None else f"{value:,.1f} ms"

    console.print(f"legacy: {row.legacy}, gap {gap(row.legacy_gap_ms)}; "
                  f"candidate: {row.candidate}, gap {gap(row.candidate_gap_ms)}", highlight=False)
    for issue in row.issues:
        console.print(f"- {issue}", highlight=False, markup=False)
    if row.payload is not None:
        console.print("ERP payloads: " + ("equal after normalisation" if row.payload.equal
                                          else row.payload.difference), highlight=False,
                      markup=False)


def print_timeline(events, order_key: str) -> None:
    from cutover.report_view import render_timeline

    render_timeline(console, events, order_key)
