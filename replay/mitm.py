"""Read mitmproxy dump files (`mitmdump -w`, `save_stream_file`).

mitmproxy's own `FlowReader` parses the file and migrates flows written by
older versions to the running version's format. A file written by a newer
mitmproxy than the installed one can't be migrated and is reported as such.
Flows are read one at a time, so memory stays constant whatever the size of
the dump.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from replay.capture import CapturedRequest, CaptureError, ReadProblems

__all__ = ["read_mitmproxy"]


def read_mitmproxy(path: Path, problems: ReadProblems) -> Iterator[CapturedRequest]:
    """Yield the HTTP requests of a mitmproxy dump in file order.

    Flows that are not HTTP (TCP, UDP, DNS) are passed over. A damaged
    record ends the file, because the format has no marker to resume from.
    """
    from mitmproxy import exceptions, http, io, version

    record = 0
    with path.open("rb") as file:
        reader = io.FlowReader(file)
        flows = reader.stream()
        while True:
            record += 1
            try:
                flow = next(flows)
            except StopIteration:
                return
            except exceptions.FlowReadException as exc:
                problems.add(CaptureError(str(path), record, _explain(exc, version.MITMPROXY)))
                return
            if not isinstance(flow, http.HTTPFlow):
                continue
            request = flow.request
            if request.raw_content is None:
                problems.add(CaptureError(
                    str(path), record,
                    "the request body was streamed and not saved (stream_large_bodies); "
                    "capture again with a higher stream_large_bodies.",
                ))
                continue
            yield CapturedRequest(
                method=request.method,
                path=request.path,
                headers=tuple(request.headers.items(multi=True)),
                body=request.raw_content,
                timestamp=request.timestamp_start,
                source=str(path),
                record=record,
            )


def _explain(exc: Exception, installed: str) -> str:
    text = str(exc)
    if "cannot read files with flow format version" in text:
        return f"{text} The installed mitmproxy is {installed}; read the dump with the version that wrote it."
    if text == "Invalid data format.":
        return "the dump is truncated or damaged here (not a valid mitmproxy flow record)."
    return f"not a readable mitmproxy flow: {text}"
