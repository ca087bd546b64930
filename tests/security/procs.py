"""Read what processes listen on and run with, from /proc (Linux).

`listening_sockets` maps the socket inodes among a process's open files
(its /proc/PID/fd links) onto the LISTEN rows of /proc/net/tcp and tcp6. A
test so sees the address each real listener bound, with no help from the
process itself.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Self

__all__ = ["ListenerSampler", "command_line", "descendants", "listening_sockets"]

# The `st` column of /proc/net/tcp for a listening socket (TCP_LISTEN).
TCP_LISTEN = "0A"


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in brackets may contain spaces, but the fields after it don't.
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(root: int) -> set[int]:
    """Return the ids of every living process below `root`."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = _parent_of(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    waiting = [root]
    while waiting:
        for child in children.get(waiting.pop(), []):
            if child not in found:
                found.add(child)
                waiting.append(child)
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        links = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return inodes
    for link in links:
        try:
            target = os.readlink(link)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def _address(hex_address: str) -> tuple[str, int]:
    host_hex, port_hex = hex_address.split(":")
    packed = bytes.fromhex(host_hex)
    # The kernel prints each 32-bit word of the address in host byte order.
    words = b"".join(packed[i:i + 4][::-1] for i in range(0, len(packed), 4))
    family = socket.AF_INET if len(words) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, words), int(port_hex, 16)


def listening_sockets(pids: Iterable[int]) -> set[tuple[str, int]]:
    """Return (address, port) of every TCP socket the processes listen on."""
    inodes = set()
    for pid in pids:
        inodes |= _socket_inodes(pid)
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            columns = line.split()
            if columns[3] == TCP_LISTEN and columns[9] in inodes:
                found.add(_address(columns[1]))
    return found


def command_line(pid: int) -> bytes:
    """Return the command line of a process, arguments separated by spaces."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


class ListenerSampler:
    """Collect, every `interval_s`, the listeners and command lines of a process tree.

    A run that starts and stops its children inside one call (the demo, the
    load test) is observed from a thread while it runs. The root defaults to
    this test process.
    """

    def __init__(self, root: int | None = None, interval_s: float = 0.2) -> None:
        self.root = root if root is not None else os.getpid()
        self.interval_s = interval_s
        self.listeners: dict[int, set[tuple[str, int]]] = {}
        self.command_lines: dict[int, bytes] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="listener-sampler", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def sample(self) -> None:
        pids = descendants(self.root) | {self.root}
        for pid in pids:
            line = command_line(pid)
            if line:
                self.command_lines[pid] = line
            bound = listening_sockets([pid])
            if bound:
                self.listeners.setdefault(pid, set()).update(bound)

    def all_listeners(self) -> set[tuple[str, int]]:
        return set().union(*self.listeners.values()) if self.listeners else set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()
