"""Secrets seeded everywhere a user can give one appear nowhere a run writes.

One whole run, with these parts:

- the sandbox, with a seeded webhook signing secret;
- the shadow proxy, with CUTOVER_REDACTION_KEY in its environment, a capture
  file, the metrics endpoint and a PostgreSQL ledger whose URL carries a
  password (trust authentication ignores it);
- orders, plus traffic with Authorization and X-Api-Key headers and tokens in
  query strings, on the ingress and on the ERP and email taps;
- `cutover replay --rewrite-ids` of the capture, with the signing secret in
  its environment;
- `cutover report` (every format), `cutover compare` and `cutover ledger
  export` against the ledger URL.

Every file the run wrote, the ledger's rows, the metrics page, the commands'
output and the command lines of the proxy's processes are scanned for each
secret, raw and encoded (`tests.security.scan`), and the ledger and reports
for the customers' personal data.

Error paths (an unreachable ledger, invalid configurations) get tests of
their own, because their messages are written only when something fails.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy
from sqlalchemy import text

from cutover.demo import wait_until_settled
from cutover.ledger import open_ledger
from cutover.privacy import REDACTION_KEY_ENV
from cutover.processes import (
    ChildProcess,
    mitmdump_command,
    start_sandbox,
    wait_for_ports,
    write_sandbox_settings,
)
from cutover.topology import Topology, free_ports
from sandbox.orders import encode_order, make_orders
from sandbox.settings import SandboxSettings
from sandbox.storefront import send_webhooks, webhook_headers
from tests.conftest import POSTGRES_URL
from tests.security.procs import ListenerSampler
from tests.security.scan import Finding, Needle, Scanner, files_under

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

CUTOVER = str(Path(sys.executable).parent / "cutover")
RUN_ID = "secret-scan"
SEED = 41
ORDERS = 12

# Secrets with characters that change under URL encoding, so each form is
# distinct from the raw value.
PG_PASSWORD = "pg-pass/seeded+Q7x=3c9e51d0"
SIGNING_SECRET = "whsec_seeded/signing+8b2f60e1d9"
REDACTION_KEY = "redaction-key/seeded+7d2e=91b0c4"
INGRESS_PASSWORD = "ingress-basic-seeded-93e1f7a2"
INGRESS_API_KEY = "ingress-apikey-seeded-5b08c3d6"
INGRESS_QUERY_TOKEN = "ingress-query-seeded-a4e7d1c9"
ERP_TOKEN = "erp-bearer-seeded-5e7c19a2b4"
ERP_API_KEY = "erp-apikey-seeded-0d4b8e6f31"
ERP_QUERY_TOKEN = "erp-query-seeded-2f9b6e0a71"
EMAIL_TOKEN = "SG.seeded-email-token.a61f0c9d27"

SECRETS = {
    "PostgreSQL password in the ledger URL": PG_PASSWORD,
    "webhook signing secret": SIGNING_SECRET,
    REDACTION_KEY_ENV: REDACTION_KEY,
    "ingress Authorization: Basic password": INGRESS_PASSWORD,
    "ingress X-Api-Key": INGRESS_API_KEY,
    "ingress query-string token": INGRESS_QUERY_TOKEN,
    "ERP Authorization: Bearer token": ERP_TOKEN,
    "ERP X-Api-Key": ERP_API_KEY,
    "ERP query-string token": ERP_QUERY_TOKEN,
    "email Authorization: Bearer token": EMAIL_TOKEN,
}

# The capture keeps each webhook's request path as received, because a
# replay must send it to the same URL. A token in the webhook URL's query so
# stays in the capture, which the README documents as unredacted.
KEPT_ON_PURPOSE = {"ingress query-string token": {"capture.mitm"}}


@dataclass
class SecretRun:
    """What one run wrote, by where it was written."""

    files: list[Path]
    # Output that is not a file of the run: the ledger's rows, the metrics
    # page, the commands' stdout and stderr, by a name for messages.
    texts: dict[str, bytes] = field(default_factory=dict)
    command_lines: dict[str, bytes] = field(default_factory=dict)
    event_count: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    def scan(self, scanner: Scanner, *, skip: set[str] = frozenset()) -> list[Finding]:
        findings = scanner.scan_files(path for path in self.files if path.name not in skip)
        for where, content in self.texts.items():
            findings += scanner.scan_bytes(content, where)
        return findings


def _ledger_url(schema: str, port: int = 5432) -> str:
    base = POSTGRES_URL.replace("postgres@", f"postgres:{quote(PG_PASSWORD, safe='')}@")
    return base.replace(":5432/", f":{port}/") + f"?options=-csearch_path%3D{schema}"


@pytest.fixture(scope="module")
def schema():
    """A PostgreSQL schema of this module's own, dropped afterwards."""
    engine = sqlalchemy.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"))
    try:
        connection = engine.connect()
    except sqlalchemy.exc.OperationalError as exc:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc.__class__.__name__}")
    name = "cutover_secrets_" + uuid.uuid4().hex[:8]
    with connection:
        connection.execute(text(f'CREATE SCHEMA "{name}"'))
        connection.commit()
    try:
        yield name
    finally:
        with engine.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
            connection.commit()
        engine.dispose()


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _send_credentialed_traffic(topology: Topology) -> dict[str, int]:
    """Send one webhook and ERP and email calls that carry credentials; return each status."""
    order = make_orders(SEED, 1, start_number=9001)[0]
    body = encode_order(order)
    basic = base64.b64encode(f"shop:{INGRESS_PASSWORD}".encode()).decode()
    webhook = {**webhook_headers(order, body, SIGNING_SECRET),
               "Authorization": f"Basic {basic}", "X-Api-Key": INGRESS_API_KEY}
    statuses = {"webhook": _post(f"{topology.ingress_url}?token={INGRESS_QUERY_TOKEN}", body, webhook)}

    sales_order = json.dumps({"externalId": str(order["id"]), "entity": {"id": "42"},
                              "email": order["email"], "item": {"items": []}}).encode()
    erp_headers = {"Content-Type": "application/json", "Authorization": f"Bearer {ERP_TOKEN}",
                   "X-Api-Key": ERP_API_KEY}
    erp_path = f"/services/rest/record/v1/salesOrder?access_token={ERP_QUERY_TOKEN}"
    statuses["erp"] = _post(topology.url(topology.legacy_erp_tap) + erp_path, sales_order, erp_headers)

    mail = json.dumps({
        "personalizations": [{"to": [{"email": order["email"]}]}],
        "from": {"email": "shop@example.com"}, "subject": "Your order",
        "categories": ["order_confirmation"], "custom_args": {"order_id": str(order["id"])},
        "content": [{"type": "text/plain", "value": "Thank you"}],
    }).encode()
    mail_headers = {"Content-Type": "application/json", "Authorization": f"Bearer {EMAIL_TOKEN}"}
    for name, port in (("legacy email", topology.legacy_email_tap),
                       ("candidate email", topology.candidate_email_tap)):
        statuses[name] = _post(topology.url(port) + "/v3/mail/send", mail, mail_headers)
    return statuses


def _run_cli(name: str, arguments: list[str], cwd: Path, texts: dict[str, bytes],
             env: dict[str, str] | None = None) -> int:
    environment = {**os.environ, **env} if env else None
    completed = subprocess.run([CUTOVER, *arguments], capture_output=True, cwd=cwd, timeout=120,
                               env=environment)
    texts[f"`cutover {name}` stdout"] = completed.stdout
    texts[f"`cutover {name}` stderr"] = completed.stderr
    return completed.returncode


def _process_name(pid: int, command_line: bytes) -> str:
    words = command_line.decode("utf-8", errors="replace").split()
    program = next((Path(word).name for word in words if word.endswith(("mitmdump", "sidecar", "sandbox"))),
                   Path(words[0]).name if words else "?")
    return f"command line of pid {pid} ({program})"


def _ledger_rows(url: str) -> bytes:
    """Return every row of every ledger table as JSON text, one per line."""
    engine = open_ledger(url, create=False)
    lines = []
    try:
        with engine.connect() as connection:
            tables = connection.execute(text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            )).scalars().all()
            for table in tables:
                rows = connection.execute(text(f'SELECT row_to_json(t)::text FROM "{table}" t'))
                lines += [f"{table}: {row}" for row in rows.scalars()]
    finally:
        engine.dispose()
    return "\n".join(lines).encode("utf-8")


@pytest.fixture(scope="module")
def secret_run(tmp_path_factory, schema):
    folder = tmp_path_factory.mktemp("secret-run")
    runs = folder / "runs" / RUN_ID
    runs.mkdir(parents=True)
    url = _ledger_url(schema)
    texts: dict[str, bytes] = {}

    topology = Topology.on_free_ports(replace(SandboxSettings(), webhook_secret=SIGNING_SECRET,
                                              legacy_poll_interval_s=0.2, seed=SEED))
    settings_path = runs / "sandbox.json"
    secret = write_sandbox_settings(topology.sandbox_settings(), settings_path)
    metrics_port = free_ports(1)[0]
    config = topology.shadow_config(run_id=RUN_ID, ledger_url=url)
    config["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}
    config_path = folder / "cutover.json"  # the user's input, not scanned
    config_path.write_text(json.dumps(config), encoding="utf-8")
    modes = [f"reverse:{route['upstream']}@{route['listen']}" for route in config["route"]]
    command = mitmdump_command(config_path, modes, extra=[
        "--set", f"cutover_capture={runs / 'capture.mitm'}", "--set", "cutover_status=true"])

    engine = open_ledger(url)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(REDACTION_KEY_ENV, REDACTION_KEY)
        sandbox = start_sandbox(settings_path, topology.sandbox_ports, runs / "sandbox.log",
                                webhook_secret=secret)
        proxy = ChildProcess("mitmdump", command, runs / "proxy.log")
    try:
        wait_for_ports([*topology.proxy_ports, metrics_port], timeout_s=30, process=proxy)
        sampler = ListenerSampler(root=proxy.process.pid)
        sampler.sample()
        orders = make_orders(SEED, ORDERS)
        summary = asyncio.run(send_webhooks(topology.ingress_url, orders, SIGNING_SECRET,
                                            rate_per_s=50.0))
        statuses = _send_credentialed_traffic(topology)
        wait_until_settled(engine, RUN_ID, expected=summary.ok + 1, timeout_s=60, quiet_s=1.0,
                           check_alive=lambda: (sandbox.check_alive(), proxy.check_alive()))
        # The replay re-signs every captured webhook with the secret from its
        # environment, the only place the command takes it from.
        statuses["replay exit code"] = _run_cli(
            "replay", ["replay", str(runs / "capture.mitm"), "--target", topology.ingress_url,
                       "--rewrite-ids", "--rate", "50", "--runs-dir", str(folder / "runs"),
                       "--no-progress"],
            folder, texts, env={"CUTOVER_WEBHOOK_SECRET": SIGNING_SECRET})
        wait_until_settled(engine, RUN_ID, expected=2 * (summary.ok + 1), timeout_s=60, quiet_s=1.0,
                           check_alive=lambda: (sandbox.check_alive(), proxy.check_alive()))
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as page:
            texts["metrics page"] = page.read()
        sampler.sample()
    finally:
        proxy.stop()
        sandbox.stop()
    engine.dispose()

    reports = folder / "reports"
    _run_cli("report", ["report", RUN_ID, "--ledger", url, "--out", str(reports), "--min-orders", "1"],
             folder, texts)
    _run_cli("compare", ["compare", RUN_ID, "--ledger", url], folder, texts)
    (folder / "export").mkdir()
    _run_cli("ledger export", ["ledger", "export", RUN_ID, "--ledger", url,
                               "--out", str(folder / "export" / "run.jsonl")], folder, texts)
    texts["ledger rows"] = _ledger_rows(url)
    return SecretRun(
        files=files_under(folder / "runs", reports, folder / "export"),
        texts=texts,
        command_lines={_process_name(pid, line): line for pid, line in sampler.command_lines.items()},
        event_count=sum(line.startswith(b"events: ") for line in texts["ledger rows"].splitlines()),
        statuses=statuses,
    )


def test_run_wrote_evidence_to_scan(secret_run):
    names = {path.name for path in secret_run.files}

    assert names >= {"proxy.log", "sandbox.log", "sandbox.json", "capture.mitm", "report.md",
                     "report.json", "report.html", "report.junit.xml", "run.jsonl", "deliveries.jsonl"}
    assert secret_run.event_count > 2 * ORDERS
    # The gated flow accepts only webhooks signed with the seeded secret, which
    # reaches the sandbox through its environment alone.
    assert b'"flow":"candidate","kind":"erp.acked"' in secret_run.texts["ledger rows"]
    assert b"cutover_webhooks_seen" in secret_run.texts["metrics page"]
    assert secret_run.statuses["webhook"] == 200
    assert secret_run.statuses["candidate email"] == 202
    assert secret_run.statuses["replay exit code"] == 0
    assert all(secret_run.texts[f"`cutover {name}` stdout"] for name in ("report", "compare"))


@pytest.mark.parametrize("label", list(SECRETS))
def test_run_output_holds_no_secret(secret_run, label):
    findings = secret_run.scan(Scanner([Needle(label, SECRETS[label])]),
                               skip=KEPT_ON_PURPOSE.get(label, set()))

    assert not findings, "\n".join(map(str, findings))


def test_child_command_lines_hold_no_secret(secret_run):
    scanner = Scanner(Needle(label, value) for label, value in SECRETS.items())
    assert secret_run.command_lines

    findings = [finding for where, line in secret_run.command_lines.items()
                for finding in scanner.scan_bytes(line, where)]

    assert not findings, "\n".join(map(str, findings))


def test_ledger_and_reports_hold_no_personal_data(secret_run):
    values = set()
    for order in [*make_orders(SEED, ORDERS), *make_orders(SEED, 1, start_number=9001)]:
        customer = order["customer"]
        values |= {order["email"], customer["phone"], customer["last_name"],
                   f"{customer['first_name']} {customer['last_name']}",
                   order["billing_address"]["address1"], order["shipping_address"]["address1"]}
    scanner = Scanner(Needle("personal data " + repr(value), value, encoded=False) for value in values)
    evidence = [path for path in secret_run.files if path.parent.name in ("reports", "export")]

    findings = scanner.scan_files(evidence) + scanner.scan_bytes(secret_run.texts["ledger rows"],
                                                                 "ledger rows")

    assert evidence
    assert not findings, "\n".join(map(str, findings))
