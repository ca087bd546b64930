"""`cutover replay`: send captured traffic to the proxy's ingress or to a flow."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

__all__ = ["replay"]

EXIT_FAILED_DELIVERIES = 1
EXIT_ERROR = 2

errors = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    errors.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_ERROR)


def replay(
    sources: Annotated[list[Path], typer.Argument(help="Capture files (.mitm, .har, .gor, .gor.gz, .jsonl) or run folders holding them, replayed one after the other.")],
    target: Annotated[str | None, typer.Option(help="URL to send to. With no path, each request keeps its captured path. Default: the ingress listener in --config.")] = None,
    config: Annotated[Path, typer.Option("--config", "-c", help="Shadow configuration whose ingress route is the default target.")] = Path("cutover.toml"),
    capture_format: Annotated[str | None, typer.Option("--format", help="Read every source as this format (mitmproxy, har, goreplay, jsonl) instead of guessing from the name.")] = None,
    speed: Annotated[float, typer.Option(min=0.0001, help="Divide the captured pauses between requests by this factor (10: ten times faster).")] = 1.0,
    rate: Annotated[float | None, typer.Option(min=0.0001, help="Send this many original deliveries per second, ignoring the captured timing.")] = None,
    max_pause: Annotated[float, typer.Option(min=0.0, help="Maximum pause between two deliveries, in seconds, after --speed (0: back to back). Captures spanning days or several files otherwise wait that long.")] = 60.0,
    concurrency: Annotated[int, typer.Option(min=1, help="Deliveries open at once.")] = 64,
    loops: Annotated[int, typer.Option(min=1, help="Times the sources are replayed.")] = 1,
    sample: Annotated[str, typer.Option(help="Share of orders to replay, as a percentage ('10%') or a fraction ('0.1'), chosen by a hash of the order key.")] = "100%",
    key: Annotated[str, typer.Option(help="JMESPath rule to the order key in the JSON body.")] = "id",
    rewrite_ids: Annotated[bool, typer.Option("--rewrite-ids", help="Give every order a fresh key (--id-prefix plus a counter) in body and headers and re-sign the HMAC.")] = False,
    id_prefix: Annotated[str | None, typer.Option(help="Prefix of the new order keys; digits when the keys are JSON numbers. Default: the start time as yymmddHHMMSS.")] = None,
    secret_env: Annotated[str, typer.Option(help="Name of the environment variable that contains the shop's webhook signing secret, for --rewrite-ids.")] = "CUTOVER_WEBHOOK_SECRET",
    duplicates: Annotated[str, typer.Option(help="Share of deliveries sent twice with the same event id ('5%').")] = "0",
    duplicate_delay: Annotated[float, typer.Option(min=0.0, help="Maximum pause before a duplicate, in seconds.")] = 1.0,
    retries: Annotated[str, typer.Option(help="Share of deliveries sent again with the original payload after --retry-delay ('1%').")] = "0",
    retry_delay: Annotated[float, typer.Option(min=0.0, help="Pause before a retry, in seconds.")] = 10.0,
    out_of_order: Annotated[str, typer.Option(help="Share of deliveries sent after the delivery that followed them ('2%').")] = "0",
    late: Annotated[str, typer.Option(help="Share of deliveries sent --late-delay seconds after their due time ('1%').")] = "0",
    late_delay: Annotated[float, typer.Option(min=0.0, help="Delay of a late delivery, in seconds.")] = 30.0,
    seed: Annotated[int, typer.Option(help="Seed of the delivery behaviour draws; the same seed and sources give the same deliveries.")] = 0,
    timeout: Annotated[float, typer.Option(min=0.001, help="Seconds to wait for each response.")] = 5.0,
    on_error: Annotated[str, typer.Option(help="What to do with a record that can't be read: 'stop' the replay or 'skip' it (it is logged and counted).")] = "stop",
    record: Annotated[Path | None, typer.Option(help="JSON lines file with one line per delivery. Default: <runs-dir>/replay-<time>/deliveries.jsonl.")] = None,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="Folder that holds one sub-folder per run.")] = Path("runs"),
    progress: Annotated[bool, typer.Option(help="Show a progress bar with rate and ETA.")] = True,
) -> None:
    """Replay captured webhooks with timing control and print a summary.

    Exit code 0 when every delivery got a 2xx, 1 when any failed, 2 on an error.
    """
    import asyncio

    import replay as replay_api

    try:
        behaviour = replay_api.Behaviour(
            duplicate=replay_api.parse_share(duplicates), duplicate_delay_s=duplicate_delay,
            retry=replay_api.parse_share(retries), retry_delay_s=retry_delay,
            out_of_order=replay_api.parse_share(out_of_order),
            late=replay_api.parse_share(late), late_delay_s=late_delay, seed=seed,
        )
        share = replay_api.parse_share(sample)
        key_rule = replay_api.compile_key_rule(key)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if share == 0:
        raise _fail("--sample 0% would send nothing; give a share above 0.")
    on_error_mode = _choice(replay_api.OnError, on_error, "--on-error")
    chosen_format = _choice(replay_api.CaptureFormat, capture_format, "--format") if capture_format else None
    target = target or _ingress_target(config)
    try:
        replay_api.check_target(target)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    started_at = datetime.now(UTC)
    rewriter = _rewriter(secret_env, id_prefix or started_at.strftime("%y%m%d%H%M%S"), key_rule) if rewrite_ids else None

    problems = replay_api.ReadProblems(on_error=on_error_mode)
    source = replay_api.ChainedSources(tuple(
        replay_api.load_source(path, capture_format=chosen_format, problems=problems) for path in sources
    ))
    try:
        expected = _count_deliveries(sources, chosen_format, on_error_mode, share, key_rule) * loops
    except replay_api.CaptureError as exc:
        hint = "" if exc.record is None else " Fix the record, or pass --on-error skip."
        raise _fail(f"{exc} Nothing was sent.{hint}") from None
    if expected == 0:
        names = ", ".join(str(path) for path in sources)
        raise _fail(f"{names} contains no webhook delivery to replay (after --sample and skipped "
                    "records), so nothing was sent. Check that the capture recorded POST requests "
                    "with a body.")

    record_path = record or runs_dir / f"replay-{started_at.strftime('%Y%m%d-%H%M%S')}" / "deliveries.jsonl"
    record_path.parent.mkdir(parents=True, exist_ok=True)
    settings = {
        "sources": [str(path) for path in sources], "target": target, "speed": speed, "rate": rate,
        "max_pause_s": max_pause, "concurrency": concurrency, "loops": loops, "sample": share, "key": key,
        "rewrite_ids": rewrite_ids, "id_prefix": rewriter.prefix if rewriter else None,
        "secret_env": secret_env if rewrite_ids else None, "behaviour": behaviour.__dict__,
        "on_error": on_error, "started_at": started_at.isoformat(),
    }

    async def run(on_progress: Any) -> replay_api.ReplaySummary:
        with record_path.open("w", encoding="utf-8") as record_file:
            return await replay_api.send(
                source, target, speed=speed, rate=rate, max_pause_s=max_pause, loops=loops,
                sample=share, concurrency=concurrency, timeout_s=timeout, behaviour=behaviour,
                rewriter=rewriter, key_rule=key, problems=problems, record=record_file,
                on_progress=on_progress,
            )

    errors.print(f"Replaying {expected} deliveries to {target}", highlight=False)
    try:
        if progress:
            with _progress_bar() as bar:
                task = bar.add_task("replay", total=expected)

                def on_progress(summary: replay_api.ReplaySummary, planned: int) -> None:
                    bar.update(task, completed=summary.ok + summary.failed_total, total=max(expected, planned))

                summary = asyncio.run(run(on_progress))
        else:
            summary = asyncio.run(run(None))
    except ValueError as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        errors.print(f"Interrupted; {record_path} lists the deliveries that finished.")
        raise typer.Exit(130) from None

    (record_path.parent / "replay.json").write_text(
        json.dumps({"settings": settings, "summary": summary.to_dict()}, indent=2) + "\n", encoding="utf-8")
    _print_summary(summary, record_path)
    if summary.stopped_by:
        raise _fail(f"the replay stopped early: {summary.stopped_by} "
                    "Fix the capture, or pass --on-error skip to pass over bad records.")
    if summary.failed_total:
        raise typer.Exit(EXIT_FAILED_DELIVERIES)


def _choice(kind: Any, value: str, option: str) -> Any:
    names = [item.value for item in kind]
    if value not in names:
        raise _fail(f"Invalid {option} {value!r}; use one of {', '.join(names)}.")
    return kind(value)


def _rewriter(secret_env: str, prefix: str, key_rule: Any) -> Any:
    from replay.rewrite import IdRewriter

    # SECURITY: the secret goes only to the rewriter, never into a message or the settings file.
    secret = os.environ.get(secret_env)
    if not secret:
        raise _fail(f"--rewrite-ids needs the shop's webhook signing secret in the environment "
                    f"variable {secret_env}, which is not set. Set it, or name another variable "
                    "with --secret-env.")
    try:
        return IdRewriter(secret, prefix=prefix, key_rule=key_rule)
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _ingress_target(config: Path) -> str:
    from shadow.config import ConfigError, load_config

    if not config.exists():
        raise _fail(f"No --target given and no configuration at {config}. Pass --target with the proxy's "
                    "ingress URL or a flow's webhook URL, or --config with an ingress route.")
    try:
        parsed = load_config(config)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    for route in parsed.routes:
        if route.role == "ingress":
            return f"http://{route.listen_host}:{route.listen_port}"
    raise _fail(f"{config} has no ingress route; pass --target with the URL to send to.")


def _count_deliveries(sources: list[Path], capture_format: Any, on_error: Any, share: float, key_rule: Any) -> int:
    """Count the original deliveries of one pass, so the progress bar has a total and bad records show early."""
    import replay as replay_api
    from replay.keys import SAMPLE_BUCKETS, order_key_of, sample_bucket

    problems = replay_api.ReadProblems(on_error=on_error, logged=False)
    count = 0
    for path in sources:
        for request in replay_api.load_source(path, capture_format=capture_format, problems=problems):
            if share < 1 and sample_bucket(request, order_key_of(request, key_rule)) >= share * SAMPLE_BUCKETS:
                continue
            count += 1
    return count


def _progress_bar() -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TimeRemainingColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed:.0f}/s" if task.speed else "-/s")

    return Progress(BarColumn(), MofNCompleteColumn(), RateColumn(), TimeRemainingColumn(), console=errors)


def _print_summary(summary: Any, record_path: Path) -> None:
    from rich.table import Table

    table = Table(title="Replay summary", show_header=False)
    table.add_row("target", summary.target)
    table.add_row("sent", str(summary.sent))
    table.add_row("ok (2xx)", str(summary.ok))
    failed = ", ".join(f"{reason}: {count}" for reason, count in summary.failed.most_common()) or "none"
    table.add_row("failed", f"{summary.failed_total} ({failed})")
    table.add_row("by kind", ", ".join(f"{kind}: {count}" for kind, count in sorted(summary.by_kind.items())) or "none")
    table.add_row("achieved rate", f"{summary.rate_per_s:.1f}/s over {summary.elapsed_s:.2f} s")
    table.add_row("schedule lag p50 / p99 / max",
                  f"{summary.lag_p50_ms:.2f} / {summary.lag_p99_ms:.2f} / {summary.lag_max_ms:.2f} ms")
    table.add_row("read / sampled out", f"{summary.read} / {summary.sampled_out}")
    table.add_row("skipped records", str(summary.skipped_records))
    Console().print(table)
    Console().print(f"Deliveries: {record_path}", highlight=False, soft_wrap=True)
    for example in summary.skipped_examples:
        errors.print(f"[yellow]skipped:[/yellow] {example}", highlight=False, soft_wrap=True)
