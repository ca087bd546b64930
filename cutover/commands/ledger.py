"""`cutover ledger export` and `cutover ledger import`: move a run between ledgers.

A run travels as one file, so it can go from a proxy's SQLite file to the
team's PostgreSQL ledger and back:

- JSON lines (`.jsonl`): the first line is a header with the run's row,
  then one line per registered proxy instance, per counter and per event,
  each with a `record` field saying which;
- Parquet (`.parquet`, needs pyarrow): the events as columns, with the
  header, instances and counters as JSON in the file's metadata.

Events keep their order (by id), so ties on the clock resolve as in the
source ledger. Times are ISO 8601 in UTC.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select

from cutover.ledger import (
    Event,
    LedgerError,
    ProxyInstance,
    Run,
    RunCounter,
    insert_events,
    open_ledger,
    safe_url,
)

__all__ = ["ExportError", "TransferCounts", "export_run", "import_run", "ledger_app"]

FORMAT = "cutover-ledger-export"
FORMAT_VERSION = 1
# Events read or written per batch.
BATCH_ROWS = 5000
_EVENT_FIELDS = ("order_key", "flow", "kind", "wall_time", "mono_ns", "instance_id", "route",
                 "http_flow_id", "status", "latency_ms", "snapshot", "digest", "detail")
_TIME_FIELDS = {"wall_time", "started_at", "finished_at"}
_PARQUET_META_KEY = b"cutover"

ledger_app = typer.Typer(
    help="Move a run between ledgers (SQLite and PostgreSQL) as a JSON-lines or Parquet file.",
    no_args_is_help=True,
)


class ExportError(Exception):
    """A run could not be exported or imported."""


@dataclass(frozen=True)
class TransferCounts:
    run_id: str
    events: int
    instances: int
    counters: int


def export_run(url: str, run_id: str, path: Path) -> TransferCounts:
    """Write one run of the ledger at `url` to `path` (.jsonl, or .parquet with pyarrow)."""
    engine = open_ledger(url, create=False)
    try:
        with Session(engine) as session:
            run = session.get(Run, run_id)
            if run is None:
                raise ExportError(f"Run {run_id!r} not found in the ledger at {safe_url(url)}.")
            header = {"record": "run", "format": FORMAT, "version": FORMAT_VERSION, **_plain(run)}
            instances = [_plain(row) for row in session.exec(
                select(ProxyInstance).where(ProxyInstance.run_id == run_id))]
            counters = [_plain(row) for row in session.exec(
                select(RunCounter).where(RunCounter.run_id == run_id))]
            events = _events(session, run_id)
            if path.suffix == ".parquet":
                written = _write_parquet(path, header, instances, counters, events)
            else:
                written = _write_jsonl(path, header, instances, counters, events)
    except SQLAlchemyError as exc:
        raise LedgerError(f"Can't export run {run_id!r} from {safe_url(url)}: {exc}") from exc
    finally:
        engine.dispose()
    return TransferCounts(run_id, written, len(instances), len(counters))


def import_run(url: str, path: Path) -> TransferCounts:
    """Load a run exported by `export_run` into the ledger at `url`.

    Raises ExportError when the file is not an export or the run already
    exists in the target ledger.
    """
    header, instances, counters, events = (
        _read_parquet(path) if path.suffix == ".parquet" else _read_jsonl(path))
    run_id = header["id"]

    engine = open_ledger(url)
    try:
        with Session(engine) as session:
            if session.get(Run, run_id) is not None:
                raise ExportError(
                    f"Run {run_id!r} already exists in the ledger at {safe_url(url)}; import into "
                    f"another ledger or remove that run first."
                )
        written = 0
        with engine.begin() as connection:
            connection.execute(Run.__table__.insert(), [_typed(_without(header, "record", "format", "version"))])
            if instances:
                connection.execute(ProxyInstance.__table__.insert(), [_typed(row) for row in instances])
            if counters:
                connection.execute(RunCounter.__table__.insert(), counters)
            batch: list[dict[str, Any]] = []
            for event in events:
                batch.append(_typed({**event, "run_id": run_id}))
                if len(batch) >= BATCH_ROWS:
                    insert_events(connection, batch)
                    written += len(batch)
                    batch = []
            insert_events(connection, batch)
            written += len(batch)
    except SQLAlchemyError as exc:
        raise LedgerError(f"Can't import run {run_id!r} into {safe_url(url)}: {exc}") from exc
    finally:
        engine.dispose()
    return TransferCounts(run_id, written, len(instances), len(counters))


def _events(session: Session, run_id: str) -> Iterator[dict[str, Any]]:
    statement = (select(Event).where(Event.run_id == run_id).order_by(Event.id)
                 .execution_options(yield_per=BATCH_ROWS))
    for event in session.exec(statement):
        yield {name: _plain_value(getattr(event, name)) for name in _EVENT_FIELDS}


def _plain(row: Any) -> dict[str, Any]:
    return {name: _plain_value(value) for name, value in row.model_dump().items()}


def _plain_value(value: Any) -> Any:
    if isinstance(value, datetime):
        # SQLite returns the stored UTC time without its zone.
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat()
    return value


def _typed(row: dict[str, Any]) -> dict[str, Any]:
    typed = dict(row)
    for name in _TIME_FIELDS & typed.keys():
        if typed[name] is not None:
            typed[name] = datetime.fromisoformat(typed[name])
    return typed


def _without(row: dict[str, Any], *names: str) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key not in names}


def _write_jsonl(path: Path, header: dict[str, Any], instances: list[dict[str, Any]],
                 counters: list[dict[str, Any]], events: Iterator[dict[str, Any]]) -> int:
    written = 0
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps(header) + "\n")
        for row in instances:
            out.write(json.dumps({"record": "instance", **row}) + "\n")
        for row in counters:
            out.write(json.dumps({"record": "counter", **row}) + "\n")
        for row in events:
            out.write(json.dumps({"record": "event", **row}) + "\n")
            written += 1
    return written


def _read_jsonl(path: Path) -> tuple[dict, list[dict], list[dict], Iterator[dict]]:
    try:
        with path.open(encoding="utf-8") as lines:
            header = json.loads(lines.readline() or "{}")
            _check_header(path, header)
            instances, counters = [], []
            for line in lines:
                row = json.loads(line)
                if row["record"] == "event":
                    break
                (instances if row["record"] == "instance" else counters).append(_without(row, "record"))
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        raise ExportError(f"Can't read {path}: {exc}") from exc

    def events() -> Iterator[dict]:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ExportError(f"Invalid JSON on line {number} of {path}: {exc}") from exc
                if row.get("record") == "event":
                    yield _without(row, "record")

    return header, instances, counters, events()


def _check_header(path: Path, header: dict[str, Any]) -> None:
    if header.get("format") != FORMAT:
        raise ExportError(f"{path} is not a cutover ledger export: its first record has no "
                          f"'format': {FORMAT!r}. Write it with `cutover ledger export`.")
    if header.get("version", 0) > FORMAT_VERSION:
        raise ExportError(f"{path} has export format version {header['version']}, newer than this "
                          f"cutover reads ({FORMAT_VERSION}). Upgrade cutover to import it.")


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ModuleNotFoundError as exc:
        raise ExportError("Parquet needs pyarrow, which is not installed: run `pip install pyarrow`, "
                          "or use a .jsonl file.") from exc
    return pyarrow


def _write_parquet(path: Path, header: dict[str, Any], instances: list[dict[str, Any]],
                   counters: list[dict[str, Any]], events: Iterator[dict[str, Any]]) -> int:
    pa = _pyarrow()
    schema = pa.schema(
        [(name, pa.string()) for name in ("order_key", "flow", "kind", "wall_time")]
        + [("mono_ns", pa.int64()), ("instance_id", pa.string()), ("route", pa.string()),
           ("http_flow_id", pa.string()), ("status", pa.int64()), ("latency_ms", pa.float64())]
        + [(name, pa.string()) for name in ("snapshot", "digest", "detail")],
        metadata={_PARQUET_META_KEY: json.dumps(
            {"header": header, "instances": instances, "counters": counters})},
    )
    written = 0
    with pa.parquet.ParquetWriter(str(path), schema) as writer:
        batch: list[dict[str, Any]] = []
        for row in events:
            batch.append(row)
            if len(batch) >= BATCH_ROWS:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                written += len(batch)
                batch = []
        if batch or not written:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            written += len(batch)
    return written


def _read_parquet(path: Path) -> tuple[dict, list[dict], list[dict], Iterator[dict]]:
    pa = _pyarrow()
    try:
        parquet = pa.parquet.ParquetFile(str(path))
        meta = json.loads((parquet.schema_arrow.metadata or {}).get(_PARQUET_META_KEY, b"{}"))
    except (OSError, pa.ArrowException, json.JSONDecodeError) as exc:
        raise ExportError(f"Can't read {path}: {exc}") from exc
    header = meta.get("header", {})
    _check_header(path, header)

    def events() -> Iterator[dict]:
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
            yield from batch.to_pylist()

    return header, meta.get("instances", []), meta.get("counters", []), events()


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


@ledger_app.command("export")
def export_command(
    run_id: Annotated[str, typer.Argument(help="Id of the run to export.")],
    ledger: Annotated[str, typer.Option(help="URL of the ledger to read: sqlite:///path or "
                                        "postgresql://user@host/db.")],
    out: Annotated[Path, typer.Option(help="File to write: .jsonl for JSON lines, .parquet for "
                                      "Parquet (needs pyarrow). An existing file is replaced.")],
) -> None:
    """Write one run (events, proxy instances, counters) to a file."""
    try:
        counts = export_run(ledger, run_id, out)
    except (ExportError, LedgerError) as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"Exported run {counts.run_id} to {out}: {counts.events} events, "
               f"{counts.instances} proxy instances, {counts.counters} counters.")


@ledger_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                         help="File written by `cutover ledger export` "
                                              "(.jsonl or .parquet).")],
    ledger: Annotated[str, typer.Option(help="URL of the ledger to load into: sqlite:///path or "
                                        "postgresql://user@host/db. Its tables are created if missing.")],
) -> None:
    """Load a run from a file into a ledger; the run must not exist there yet."""
    try:
        counts = import_run(ledger, file)
    except (ExportError, LedgerError) as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"Imported run {counts.run_id} into {safe_url(ledger)}: {counts.events} events, "
               f"{counts.instances} proxy instances, {counts.counters} counters.")
