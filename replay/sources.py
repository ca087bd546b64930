"""Open capture files by format, and run folders.

`load_source` picks the reader from the file name, or from the first bytes
when the name says nothing. A run folder (`runs/<run id>/`) is read through
the capture files it holds. Its ledger can't serve as a source: the ledger
stores the SHA-256 digest and a redacted snapshot of each webhook body,
never the body, because bodies carry personal data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from replay.capture import CapturedRequest, CaptureError, OnError, ReadProblems

__all__ = ["CaptureFormat", "CaptureSource", "ChainedSources", "detect_format", "load_source"]

Reader = Callable[[Path, ReadProblems], Iterator[CapturedRequest]]


class CaptureFormat(StrEnum):
    MITMPROXY = "mitmproxy"
    HAR = "har"
    GOREPLAY = "goreplay"
    JSONL = "jsonl"


SUFFIXES = {
    ".mitm": CaptureFormat.MITMPROXY,
    ".flows": CaptureFormat.MITMPROXY,
    ".dump": CaptureFormat.MITMPROXY,
    ".har": CaptureFormat.HAR,
    ".gor": CaptureFormat.GOREPLAY,
    ".jsonl": CaptureFormat.JSONL,
    ".ndjson": CaptureFormat.JSONL,
}
LEDGER_FILE = "ledger.sqlite"
# Bytes of the first line read to tell JSON lines from HAR.
MAX_SNIFFED_LINE = 16 * 1024 * 1024


def _reader(capture_format: CaptureFormat) -> Reader:
    # Imported here so that reading JSON lines never loads mitmproxy.
    if capture_format is CaptureFormat.MITMPROXY:
        from replay.mitm import read_mitmproxy
        return read_mitmproxy
    if capture_format is CaptureFormat.HAR:
        from replay.har import read_har
        return read_har
    if capture_format is CaptureFormat.GOREPLAY:
        from replay.goreplay import read_goreplay
        return read_goreplay
    from replay.jsonl import read_jsonl
    return read_jsonl


def detect_format(path: Path) -> CaptureFormat:
    """Return the format of a capture file from its suffix, else from its first bytes."""
    name = path.name.lower().removesuffix(".gz")
    for suffix, capture_format in SUFFIXES.items():
        if name.endswith(suffix):
            return capture_format

    with path.open("rb") as file:
        head = file.read(512).lstrip(b"\xef\xbb\xbf \t\r\n")
        if head[:1] == b"{":
            file.seek(0)
            return _json_format(file.readline(MAX_SNIFFED_LINE))
    if head[:2] in (b"1 ", b"2 ", b"3 "):
        return CaptureFormat.GOREPLAY
    # A tnetstring starts with the length of its first value: digits and a colon.
    digits = head.split(b":", 1)[0]
    if digits.isdigit() and len(digits) < 12:
        return CaptureFormat.MITMPROXY
    raise CaptureError(str(path), None,
                       "unknown capture format; name the file .mitm, .har, .gor or .jsonl, or pass --format.")


def _json_format(first_line: bytes) -> CaptureFormat:
    """Tell JSON lines (a whole object on the first line) from a HAR document."""
    try:
        document = json.loads(first_line)
    except (ValueError, RecursionError):  # not one whole JSON value: the start of a HAR document
        return CaptureFormat.HAR
    return CaptureFormat.HAR if isinstance(document, dict) and "log" in document else CaptureFormat.JSONL


@dataclass(frozen=True)
class CaptureSource:
    """The requests of one capture file or run folder; each iteration reads the files again."""

    path: Path
    capture_format: CaptureFormat | None = None
    problems: ReadProblems = field(default_factory=ReadProblems)

    def files(self) -> list[tuple[Path, CaptureFormat]]:
        """Return the capture files behind this source with their formats."""
        if self.path.is_dir():
            return _run_folder_files(self.path)
        if self.path.name == LEDGER_FILE:
            raise _ledger_error(self.path.parent)
        if not self.path.exists():
            raise CaptureError(str(self.path), None, "file not found.")
        return [(self.path, self.capture_format or detect_format(self.path))]

    def __iter__(self) -> Iterator[CapturedRequest]:
        for path, capture_format in self.files():
            yield from _reader(capture_format)(path, self.problems)


def load_source(
    path: str | Path,
    *,
    capture_format: CaptureFormat | str | None = None,
    on_error: OnError | str = OnError.STOP,
    problems: ReadProblems | None = None,
) -> CaptureSource:
    """Open a capture file or run folder for reading.

    The result is iterable any number of times (each pass reads the files
    again), which `send` needs for looping. With `on_error="skip"` a record
    that can't be read is logged, counted in `problems` and passed over;
    with "stop" the first one raises CaptureError.
    """
    if problems is None:
        problems = ReadProblems(on_error=OnError(on_error))
    chosen = CaptureFormat(capture_format) if capture_format is not None else None
    return CaptureSource(Path(path), chosen, problems)


@dataclass(frozen=True)
class ChainedSources:
    """Several sources read one after the other; iterable any number of times."""

    sources: tuple[Iterable[CapturedRequest], ...]

    def __iter__(self) -> Iterator[CapturedRequest]:
        for source in self.sources:
            yield from source


def _run_folder_files(folder: Path) -> list[tuple[Path, CaptureFormat]]:
    files = []
    for path in sorted(folder.iterdir()):
        name = path.name.lower().removesuffix(".gz")
        capture_format = next((fmt for suffix, fmt in SUFFIXES.items() if name.endswith(suffix)), None)
        if path.is_file() and capture_format is not None:
            files.append((path, capture_format))
    if files:
        return files
    if (folder / LEDGER_FILE).exists():
        raise _ledger_error(folder)
    raise CaptureError(str(folder), None,
                       "no capture file (.mitm, .har, .gor, .jsonl) in this folder.")


def _ledger_error(folder: Path) -> CaptureError:
    return CaptureError(
        str(folder), None,
        f"run {folder.name!r} has only a ledger, and the ledger stores a SHA-256 digest and a "
        "redacted snapshot of each webhook body, not the body, so the run can't be replayed from it. "
        "Replay a capture of the same traffic instead: the mitmproxy dump the shadow proxy writes "
        "with its cutover_capture option, another mitmproxy dump, a HAR, a GoReplay file or JSON lines. "
        "A capture file in the run folder is read from there.",
    )
