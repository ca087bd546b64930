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
from sqlalchemy import Column, Table
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select
from sqlmodel.sql.sqltypes import AutoString

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
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number"}
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
    run_row = _typed(Run.__table__, _without(header, "record", "format", "version"), f"{path}, run record")
    instances = [_typed(ProxyInstance.__table__, row, f"{path}, {where}", run_id) for where, row in instances]
    counters = [_typed(RunCounter.__table__, row, f"{path}, {where}", run_id) for where, row in counters]

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
            connection.execute(Run.__table__.insert(), [run_row])
            if instances:
                connection.execute(ProxyInstance.__table__.insert(), instances)
            if counters:
                connection.execute(RunCounter.__table__.insert(), counters)
            batch: list[dict[str, Any]] = []
            for where, event in events:
                batch.append({**_typed(Event.__table__, event, f"{path}, {where}", fields=_EVENT_FIELDS),
                              "run_id": run_id})
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


def _typed(table: Table, row: dict[str, Any], where: str, run_id: str | None = None,
           fields: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Check a row read from an export against `table` and convert its times.

    Raises ExportError, naming `where`, for an unknown field, a value of the
    wrong type, or a row of another run than `run_id`.
    """
    known = set(fields) if fields is not None else {column.name for column in table.columns}
    unknown = sorted(set(row) - known)
    if unknown:
        raise ExportError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))[:200]}; "
                          f"expected some of {', '.join(sorted(known))}.")
    if run_id is not None and row.get("run_id", run_id) != run_id:
        raise ExportError(f"{where}: run_id {_shown(row['run_id'])} is not the exported run {run_id!r}.")
    missing = sorted(column.name for column in table.columns if column.name in known
                     and column.name != "run_id" and _required(column) and column.name not in row)
    if missing:
        raise ExportError(f"{where}: missing field(s) {', '.join(missing)}.")
    typed = dict(row)
    if run_id is not None:
        typed["run_id"] = run_id
    for name, value in row.items():
        typed[name] = _typed_value(table.columns[name], value, f"{where}: field {name!r}")
    return typed


def _required(column: Column) -> bool:
    """Tell whether an imported row must carry a value for `column`."""
    if column.nullable or column.default is not None or column.server_default is not None:
        return False
    return not (column.primary_key and column.autoincrement in (True, "auto")
                and column.type.python_type is int)


def _typed_value(column: Column, value: Any, where: str) -> Any:
    if value is None:
        if not column.nullable:
            raise ExportError(f"{where} must not be null.")
        return None
    # SQLModel's AutoString reports `object` as its Python type, but it contains text.
    python_type = str if isinstance(column.type, AutoString) else column.type.python_type
    if python_type is datetime:
        if not isinstance(value, str):
            raise ExportError(f"{where} must be an ISO 8601 time, but got {_shown(value)}.")
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise ExportError(f"{where} must be an ISO 8601 time, but got {_shown(value)}.") from None
    if python_type is int:
        valid = isinstance(value, int) and not isinstance(value, bool) and -2**63 <= value < 2**63
    elif python_type is float:
        valid = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        valid = isinstance(value, python_type)
    if not valid:
        raise ExportError(f"{where} must be {_TYPE_NAMES.get(python_type, python_type.__name__)}, "
                          f"but got {_shown(value)}.")
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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


def _read_jsonl(path: Path) -> tuple[dict, list[tuple[str, dict]], list[tuple[str, dict]],
                                      Iterator[tuple[str, dict]]]:
    """Read the header, instances and counters at once, and the events as they are iterated.

    Each row comes with its place in the file ("line 5") for error messages.
    """
    instances: list[tuple[str, dict]] = []
    counters: list[tuple[str, dict]] = []
    try:
        with path.open("rb") as lines:
            header = _json_line(path, 1, lines.readline() or b"{}")
            _check_header(path, header)
            for number, line in enumerate(lines, start=2):
                if not line.strip():
                    continue
                row = _json_line(path, number, line)
                record = row.get("record")
                if record == "event":
                    break
                if record not in ("instance", "counter"):
                    raise ExportError(f"{path}, line {number}: unknown record {_shown(record)}; "
                                      "expected 'instance', 'counter' or 'event'.")
                (instances if record == "instance" else counters).append(
                    (f"line {number}", _without(row, "record")))
    except OSError as exc:
        raise ExportError(f"Can't read {path}: {exc.strerror or exc}") from exc

    def events() -> Iterator[tuple[str, dict]]:
        with path.open("rb") as lines:
            for number, line in enumerate(lines, start=1):
                if number == 1 or not line.strip():
                    continue
                row = _json_line(path, number, line)
                if row.get("record") == "event":
                    yield f"line {number}", _without(row, "record")

    return header, instances, counters, events()


def _json_line(path: Path, number: int, line: bytes) -> dict[str, Any]:
    """Parse one line of a JSON-lines export; raises ExportError naming the file and the line."""
    try:
        row = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ExportError(f"{path}, line {number}: not UTF-8 text (invalid byte at offset "
                          f"{exc.start}).") from exc
    except RecursionError as exc:
        raise ExportError(f"{path}, line {number}: JSON nested too deeply to read.") from exc
    except ValueError as exc:  # JSONDecodeError, an over-long integer
        raise ExportError(f"{path}, line {number}: invalid JSON: {exc}") from exc
    if not isinstance(row, dict):
        raise ExportError(f"{path}, line {number}: expected a JSON object, but got "
                          f"{type(row).__name__}.")
    return row


def _check_header(path: Path, header: Any) -> None:
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ExportError(f"{path} is not a cutover ledger export: its first record has no "
                          f"'format': {FORMAT!r}. Write it with `cutover ledger export`.")
    version = header.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ExportError(f"{path}: the export format version must be an integer, but got "
                          f"{_shown(version)}.")
    if version > FORMAT_VERSION:
        raise ExportError(f"{path} has export format version {header['version']}, newer than this "
                          f"cutover reads ({FORMAT_VERSION}). Upgrade cutover to import it.")
    if not isinstance(header.get("id"), str) or not header["id"]:
        raise ExportError(f"{path}: the run record has no run 'id' (got {_shown(header.get('id'))}).")


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
    except (OSError, pa.ArrowException, ValueError, RecursionError) as exc:
        raise ExportError(f"Can't read {path}: {exc}") from exc
    if not isinstance(meta, dict):
        raise ExportError(f"{path} is not a cutover ledger export: its metadata is not a JSON object.")
    header = meta.get("header", {})
    _check_header(path, header)
    rows: dict[str, list[tuple[str, dict]]] = {}
    for name in ("instances", "counters"):
        items = meta.get(name, [])
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise ExportError(f"{path}: the metadata's {name!r} must be a list of objects.")
        rows[name] = [(f"{name[:-1]} {number}", item) for number, item in enumerate(items, start=1)]

    def events() -> Iterator[tuple[str, dict]]:
        number = 0
        try:
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
                for row in batch.to_pylist():
                    number += 1
                    yield f"event {number}", row
        except (OSError, pa.ArrowException) as exc:
            raise ExportError(f"Can't read {path} after event {number}: {exc}") from exc

    return header, rows["instances"], rows["counters"], events()


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
