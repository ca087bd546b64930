"""What every capture reader yields, and how read errors are reported.

A `CapturedRequest` is one HTTP request as the original client sent it: the
method, the path with its query, the header fields in wire order, and the
body as it travelled (a `Content-Encoding` such as gzip is kept, a chunked
`Transfer-Encoding` is removed). Readers never re-encode a body, so an HMAC
over the captured bytes still verifies when they are sent again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

__all__ = ["CaptureError", "CapturedRequest", "OnError", "ReadProblems", "iso_timestamp"]

log = logging.getLogger(__name__)

# Problems kept with their text for the summary; the rest are only counted.
MAX_KEPT_PROBLEMS = 100


@dataclass(frozen=True, slots=True)
class CapturedRequest:
    """One captured HTTP request, ready to be sent again."""

    method: str
    # Path and query as on the request line, such as "/webhooks/orders/create?x=1".
    path: str
    # Header fields in wire order; names keep their original case.
    headers: tuple[tuple[str, str], ...]
    body: bytes
    # Seconds since the Unix epoch at which the original request started;
    # None when the capture has no time (JSON lines may omit it).
    timestamp: float | None
    # The file the request came from and its 1-based record number there.
    source: str
    record: int

    def header(self, name: str) -> str | None:
        """Return the first value of header `name`, compared case-insensitively."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None


class CaptureError(Exception):
    """A capture file, or one record in it, can't be read."""

    def __init__(self, source: str, record: int | None, reason: str) -> None:
        where = source if record is None else f"{source}, record {record}"
        super().__init__(f"{where}: {reason}")
        self.source = source
        self.record = record
        self.reason = reason


class OnError(StrEnum):
    """Action of a reader on a record it can't read."""

    STOP = "stop"
    SKIP = "skip"


@dataclass
class ReadProblems:
    """Records that were skipped because they could not be read.

    In `OnError.STOP` mode `add` raises the error instead, so a read stops
    at the first bad record.
    """

    on_error: OnError = OnError.STOP
    count: int = 0
    kept: list[CaptureError] = field(default_factory=list)
    # False for a counting pass that reads the same files again later.
    logged: bool = True

    def add(self, error: CaptureError) -> None:
        if self.on_error is OnError.STOP:
            raise error
        self.count += 1
        if len(self.kept) < MAX_KEPT_PROBLEMS:
            self.kept.append(error)
        if self.logged:
            log.warning("Skipped a record that can't be read: %s", error)


def iso_timestamp(text: str) -> float:
    """Return the epoch seconds of an ISO 8601 time; a time without an offset is taken as UTC."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
