"""Read GoReplay files (`gor --output-file`), plain or gzip-compressed.

GoReplay writes each captured payload as a header line, the raw HTTP/1.x
message, and the separator line `🐵🙈🙉`. The header line is
`<type> <id> <timestamp in ns> [<latency in ns>]`, where type 1 is a
request, 2 the original response and 3 a replayed response. Only requests
are read; response records are passed over. A chunked body is de-chunked,
because the transfer coding belongs to the connection, and a gzip body is
kept as sent, with its `Content-Encoding` header.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from replay.capture import CapturedRequest, CaptureError, ReadProblems

__all__ = ["SEPARATOR", "read_goreplay", "write_goreplay_record"]

# The separator GoReplay writes between payloads: a newline, three monkeys, a newline.
SEPARATOR = "\n🐵🙈🙉\n".encode()
_SEPARATOR_LINE = SEPARATOR[1:]
_HEADER = re.compile(rb"^([123]) ([0-9a-fA-F]+) ([0-9]+)(?: (-?[0-9]+))?\r?$")
_REQUEST_LINE = re.compile(rb"^([A-Z]+) (\S+) HTTP/1\.[01]$")
REQUEST_TYPE = b"1"
# Header fields that describe the original connection, not the request.
_CONNECTION_HEADERS = frozenset({"transfer-encoding", "content-length", "connection", "keep-alive"})


def write_goreplay_record(file: BinaryIO, request_id: str, timestamp_ns: int, payload: bytes,
                          *, payload_type: int = 1) -> None:
    """Append one payload in GoReplay's file format (used by tests and tools)."""
    file.write(b"%d %s %d 0\n" % (payload_type, request_id.encode("ascii"), timestamp_ns))
    file.write(payload)
    file.write(SEPARATOR)


def read_goreplay(path: Path, problems: ReadProblems) -> Iterator[CapturedRequest]:
    """Yield the request records of a GoReplay file in file order."""
    opener = gzip.open if path.name.endswith(".gz") else open
    record = 0
    with opener(path, "rb") as file:
        records = _records(file)
        while True:
            try:
                raw = next(records)
            except StopIteration:
                return
            except (OSError, EOFError, zlib.error) as exc:
                # gzip.BadGzipFile is an OSError; a truncated file raises EOFError.
                problems.add(CaptureError(str(path), record + 1, f"the gzip stream can't be read: {exc}"))
                return
            record += 1
            try:
                request = _parse_record(raw, str(path), record)
            except CaptureError as exc:
                problems.add(exc)
                continue
            if request is not None:
                yield request


def _records(file: BinaryIO) -> Iterator[bytes]:
    """Yield the raw records between separators, one at a time."""
    # NOTE: a body that itself contains the separator line is split there,
    # and the part after it fails to parse as a record.
    parts: list[bytes] = []
    for line in file:
        if line == _SEPARATOR_LINE and parts:
            # The newline before the monkeys is part of the separator.
            last = parts[-1]
            parts[-1] = last[:-1] if last.endswith(b"\n") else last
            yield b"".join(parts)
            parts = []
            continue
        parts.append(line)
    if any(part.strip() for part in parts):
        yield b"".join(parts)


def _parse_record(raw: bytes, source: str, record: int) -> CapturedRequest | None:
    header, newline, payload = raw.partition(b"\n")
    match = _HEADER.match(header)
    if not newline or match is None:
        shown = header[:60].decode("utf-8", "replace")
        raise CaptureError(source, record,
                           f"invalid GoReplay header line {shown!r}; expected '<type> <id> <timestamp ns>'.")
    if match.group(1) != REQUEST_TYPE:
        return None
    timestamp = int(match.group(3)) / 1e9

    head, blank, body = _split_head(payload)
    if not blank:
        raise CaptureError(source, record, "the HTTP request has no blank line after its headers, so the record is truncated.")
    lines = head.split(b"\n")
    request_line = _REQUEST_LINE.match(lines[0].rstrip(b"\r"))
    if request_line is None:
        shown = lines[0][:80].decode("utf-8", "replace")
        raise CaptureError(source, record, f"invalid HTTP request line {shown!r}.")

    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.rstrip(b"\r").partition(b":")
        if not colon or not name.strip():
            shown = line[:80].decode("utf-8", "replace")
            raise CaptureError(source, record, f"invalid header line {shown!r}.")
        headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))

    fields = {name.lower(): value for name, value in headers}
    if "chunked" in fields.get("transfer-encoding", "").lower():
        body = _dechunk(body, source, record)
    elif "content-length" in fields:
        expected = int(fields["content-length"]) if fields["content-length"].isdigit() else -1
        if expected != len(body):
            raise CaptureError(source, record,
                               f"the body is {len(body)} bytes but Content-Length says {fields['content-length']}.")
    return CapturedRequest(
        method=request_line.group(1).decode("ascii"),
        path=request_line.group(2).decode("latin-1"),
        headers=tuple(item for item in headers if item[0].lower() not in _CONNECTION_HEADERS),
        body=body,
        timestamp=timestamp,
        source=source,
        record=record,
    )


def _split_head(payload: bytes) -> tuple[bytes, bool, bytes]:
    for marker in (b"\r\n\r\n", b"\n\n"):
        head, found, body = payload.partition(marker)
        if found:
            return head, True, body
    return payload, False, b""


def _dechunk(data: bytes, source: str, record: int) -> bytes:
    """Decode a chunked body (RFC 9112, section 7.1); trailer fields are dropped."""
    chunks = []
    position = 0
    while True:
        line_end = data.find(b"\r\n", position)
        if line_end < 0:
            raise CaptureError(source, record, "the chunked body is truncated (no chunk size line).")
        size_text = data[position:line_end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise CaptureError(source, record, f"invalid chunk size {size_text[:20]!r}.") from None
        start = line_end + 2
        if size == 0:
            return b"".join(chunks)
        if start + size + 2 > len(data) or data[start + size : start + size + 2] != b"\r\n":
            raise CaptureError(source, record, "the chunked body is truncated or a chunk has the wrong size.")
        chunks.append(data[start : start + size])
        position = start + size + 2
