"""The ledger fails under the proxy: its disk fills, or its database server drops the connections."""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import text

from cutover.ledger import STALE_AFTER_S, list_instances, open_ledger, utc_now
from tests.conftest import POSTGRES_URL
from tests.faults.harness import (
    CandidateSink,
    LedgerView,
    LegacySink,
    Servers,
    assert_legacy_answers,
    assert_orders_accounted,
    ingress_route,
    orders,
    send_orders,
    sink_answer,
    url_of,
    wait_until,
)
from tests.shadow.harness import ProxyUnderTest

pytestmark = pytest.mark.slow

# Runs mitmdump in a mount namespace of its own with a small tmpfs on the
# ledger's folder, so the ledger gets a real ENOSPC. On SIGTERM it stops
# mitmdump, then copies the ledger out, since the tmpfs ends with the namespace.
DISK_WRAPPER = r"""
mount -t tmpfs -o size="$DISK_SIZE" tmpfs "$DISK" || exit 97
"$@" &
child=$!
trap 'kill -TERM "$child"' TERM
wait "$child"
wait "$child"
status=$?
cp "$DISK"/ledger.sqlite* "$COPY"/
exit "$status"
"""
DISK_SIZE = "8m"


def _fill(folder: Path) -> int:
    """Write a file into `folder` until the disk is full; return its size in bytes."""
    chunk = b"\0" * 65536
    written = 0
    with (folder / "filler").open("wb") as filler:
        try:
            while True:
                filler.write(chunk)
                filler.flush()
                written += len(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return written


def _snapshot(seen: Path, folder: Path, run_id: str) -> LedgerView:
    """Read a copy of the ledger on the proxy's tmpfs.

    SQLite resolves the /proc/PID/root link in a path and would open the
    file outside the proxy's mount namespace, so the files are copied first.
    """
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for name in ("ledger.sqlite", "ledger.sqlite-wal"):
        if (seen / name).exists():
            shutil.copyfile(seen / name, folder / name)
    return LedgerView.read(f"sqlite:///{folder / 'ledger.sqlite'}", run_id)


def test_ledger_disk_full_then_freed_loses_nothing(tmp_path):
    """A full disk keeps rows in memory until it has room; a disk full at stop loses them, counted."""
    disk, copy = tmp_path / "disk", tmp_path / "copy"
    disk.mkdir()
    copy.mkdir()
    legacy, candidate = LegacySink(), CandidateSink()
    with Servers(legacy, candidate):
        proxy = ProxyUnderTest(tmp_path, [ingress_route(url_of(legacy), url_of(candidate))],
                               extra=["--set", f"cutover_ledger=sqlite:///{disk / 'ledger.sqlite'}"])
        if shutil.which("unshare") is None:
            pytest.fail("unshare (util-linux) is needed to give the ledger a disk of its own")
        proxy.command = ["unshare", "-m", "sh", "-c", DISK_WRAPPER, "sh", *proxy.command]
        env = {"DISK": str(disk), "DISK_SIZE": DISK_SIZE, "COPY": str(copy)}
        os.environ.update(env)
        try:
            with proxy:
                url = proxy.url("ingress", "/webhooks/orders/create")
                seen = Path(f"/proc/{proxy.child.process.pid}/root") / disk.relative_to("/")
                before = send_orders(url, orders(20))

                _fill(seen)
                while_full = send_orders(url, orders(30, first=21))
                wait_until(lambda: "Can't write to the ledger" in proxy.log_text(), 30,
                           "the writer to fail on the full disk")
                (seen / "filler").unlink()
                wait_until(lambda: "Ledger reachable again" in proxy.log_text(), 60,
                           "the writer to recover")
                after = send_orders(url, orders(20, first=51))
                wait_until(lambda: _snapshot(seen, tmp_path / "snapshot", proxy.run_id)
                           .keys_with("webhook.received") >= {answer.key for answer in after},
                           30, "the orders sent after the recovery")

                # Full again, and still full when the proxy stops.
                _fill(seen)
                at_stop = send_orders(url, orders(10, first=71))
                code = proxy.stop()
        finally:
            for name in env:
                os.environ.pop(name, None)
        log = proxy.log_text()

    url = f"sqlite:///{copy / 'ledger.sqlite'}"
    view = LedgerView.read(url, proxy.run_id)
    later = LedgerView.read(url, proxy.run_id, now=utc_now() + timedelta(seconds=STALE_AFTER_S + 60))
    recorded = before + while_full + after

    assert code == 0
    assert_legacy_answers(recorded + at_stop, sink_answer)
    assert "database or disk is full" in log
    assert assert_orders_accounted(view, {answer.key for answer in recorded}) == set()
    # What arrived while the disk was full at the stop could not be stored.
    assert "Ledger unreachable at close" in log
    assert {answer.key for answer in at_stop} & view.keys_with("webhook.received") == set()
    instance = list_instances(open_ledger(url), proxy.run_id)[0]
    assert instance.stopped_unix_s is None
    lost_orders = assert_orders_accounted(later, {answer.key for answer in at_stop})
    assert later.counters["ledger.may_be_missing"] >= len(lost_orders)


def _terminate(admin, application: str) -> int:
    with admin.begin() as connection:
        return connection.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = :name"), {"name": application}).scalar_one()


def _writer_waiting_on_lock(admin, application: str) -> bool:
    with admin.begin() as connection:
        return connection.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name "
            "AND wait_event_type = 'Lock'"), {"name": application}).scalar_one() > 0


@pytest.mark.postgres
def test_ledger_database_restart_loses_nothing(tmp_path, postgres_url):
    """The PostgreSQL ledger drops the writer's connections in the middle of a write.

    The server at 127.0.0.1:5432 is shared, so it is not restarted: a restart
    is simulated from the client's side. This test's own session locks the
    events table of its own schema, so the writer's next COPY waits. Then
    pg_terminate_backend ends every connection that carries this test's
    application_name, again and again for two seconds. Only then is the
    lock released.
    """
    application = "cutover-faults-" + uuid.uuid4().hex[:8]
    url = f"{postgres_url}&application_name={application}"
    schema = postgres_url.rsplit("search_path%3D", 1)[1]
    legacy, candidate = LegacySink(), CandidateSink()
    admin = sqlalchemy.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"))
    terminated = 0
    try:
        with Servers(legacy, candidate):
            proxy = ProxyUnderTest(tmp_path, [ingress_route(url_of(legacy), url_of(candidate))],
                                   extra=["--set", f"cutover_ledger={url}"])
            with proxy:
                ingress = proxy.url("ingress", "/webhooks/orders/create")
                before = send_orders(ingress, orders(20))
                answers: list = []
                sender = threading.Thread(target=lambda: answers.extend(
                    send_orders(ingress, orders(150, first=21), concurrency=4)))
                with admin.connect() as locker:
                    locker.execute(text(f'LOCK TABLE "{schema}".events IN ACCESS EXCLUSIVE MODE'))
                    sender.start()
                    wait_until(lambda: _writer_waiting_on_lock(admin, application), 30,
                               "the writer to wait on the locked table")
                    deadline = time.monotonic() + 2.0
                    while time.monotonic() < deadline:
                        terminated += _terminate(admin, application)
                        time.sleep(0.1)
                    locker.rollback()
                sender.join(120)
                after = send_orders(ingress, orders(20, first=171))
                code = proxy.stop()
            log = proxy.log_text()
    finally:
        admin.dispose()
    view = LedgerView.read(url, proxy.run_id)
    sent = before + answers + after

    assert not sender.is_alive()
    assert code == 0
    assert terminated > 0
    assert_legacy_answers(sent, sink_answer)
    assert "Can't write to the ledger" in log
    assert "Ledger reachable again" in log
    assert assert_orders_accounted(view, {answer.key for answer in sent}) == set()
    assert view.keys_with("mirror.sent") == {answer.key for answer in sent}
    assert view.losses == 0
