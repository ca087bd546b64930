"""`cutover replay` as a typer command, driven with CliRunner against a loopback sink."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from cutover.commands.replay import replay
from sandbox.settings import WEBHOOK_PATH
from tests.replay.helpers import SECRET, signed_webhooks

app = typer.Typer()
app.command()(replay)
runner = CliRunner()


def write_jsonl(path, count: int = 3):
    with path.open("w", encoding="utf-8") as file:
        for index, (_, body, headers) in enumerate(signed_webhooks(count)):
            line = {"body": body.decode(), "headers": headers, "path": WEBHOOK_PATH,
                    "timestamp": 1_700_000_000 + index * 0.01}
            file.write(json.dumps(line, ensure_ascii=False) + "\n")
    return path


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, [*args, "--no-progress"], env=env)


def test_replay_command_sends_and_prints_summary(sink, tmp_path):
    source = write_jsonl(tmp_path / "hooks.jsonl")

    result = invoke(str(source), "--target", sink.url, "--runs-dir", str(tmp_path / "runs"))

    assert result.exit_code == 0, result.output
    assert "Replay summary" in result.output
    assert "schedule lag p50 / p99 / max" in result.output
    assert len(sink.received) == 3
    assert all(item.hmac_ok for item in sink.received)


def test_replay_command_writes_deliveries_and_settings(sink, tmp_path):
    source = write_jsonl(tmp_path / "hooks.jsonl")
    record = tmp_path / "out" / "deliveries.jsonl"

    result = invoke(str(source), "--target", sink.url, "--record", str(record),
                    "--duplicates", "100%", "--duplicate-delay", "0.01", "--seed", "4")

    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in record.read_text().splitlines()]
    assert sorted(row["kind"] for row in rows) == ["duplicate"] * 3 + ["original"] * 3
    saved = json.loads((record.parent / "replay.json").read_text())
    assert saved["settings"]["behaviour"]["seed"] == 4
    assert saved["summary"]["sent"] == 6


def test_replay_command_exit_one_on_failed_delivery(sink, tmp_path):
    sink.statuses = {1: 500}
    source = write_jsonl(tmp_path / "hooks.jsonl")

    result = invoke(str(source), "--target", sink.url, "--concurrency", "1", "--runs-dir", str(tmp_path))

    assert result.exit_code == 1, result.output
    assert "HTTP 500: 1" in result.output


def test_replay_command_bad_record_stops_before_sending(sink, tmp_path):
    source = write_jsonl(tmp_path / "hooks.jsonl")
    with source.open("a") as file:
        file.write("not json\n")

    result = invoke(str(source), "--target", sink.url, "--runs-dir", str(tmp_path))

    assert result.exit_code == 2
    assert "hooks.jsonl, record 4: the line is not JSON" in result.output
    assert "Nothing was sent" in result.output
    assert sink.received == []


def test_replay_command_skip_mode_sends_the_rest(sink, tmp_path):
    source = write_jsonl(tmp_path / "hooks.jsonl")
    with source.open("a") as file:
        file.write("not json\n")

    result = invoke(str(source), "--target", sink.url, "--on-error", "skip", "--runs-dir", str(tmp_path))

    assert result.exit_code == 0, result.output
    assert len(sink.received) == 3
    assert "record 4" in result.output


def test_replay_command_rewrite_needs_secret_env(sink, tmp_path):
    source = write_jsonl(tmp_path / "hooks.jsonl")

    result = invoke(str(source), "--target", sink.url, "--rewrite-ids", "--secret-env", "REPLAY_TEST_SECRET",
                    env={"REPLAY_TEST_SECRET": ""})

    assert result.exit_code == 2
    assert "environment variable REPLAY_TEST_SECRET, which is not set" in result.output
    assert sink.received == []


def test_replay_command_rewrite_ids_never_prints_secret(sink, tmp_path):
    source = write_jsonl(tmp_path / "hooks.jsonl")

    result = invoke(str(source), "--target", sink.url, "--rewrite-ids", "--id-prefix", "31",
                    "--runs-dir", str(tmp_path / "runs"), env={"CUTOVER_WEBHOOK_SECRET": SECRET})

    assert result.exit_code == 0, result.output
    assert sorted(json.loads(item.body)["id"] for item in sink.received) == [31000001, 31000002, 31000003]
    assert all(item.hmac_ok for item in sink.received)
    assert SECRET not in result.output
    saved = next((tmp_path / "runs").glob("replay-*/replay.json")).read_text()
    assert SECRET not in saved


def test_replay_command_default_target_from_config(sink, tmp_path):
    source = write_jsonl(tmp_path / "hooks.jsonl", count=1)
    port = sink.url.rsplit(":", 1)[1]
    config = tmp_path / "cutover.toml"
    config.write_text(f'[[route]]\nname = "ingress"\nrole = "ingress"\nlisten = "127.0.0.1:{port}"\n'
                      'upstream = "http://127.0.0.1:9"\nmirror_to = "http://127.0.0.1:9"\n')

    result = invoke(str(source), "--config", str(config), "--runs-dir", str(tmp_path))

    assert result.exit_code == 0, result.output
    assert len(sink.received) == 1


def test_replay_command_without_target_or_config(tmp_path):
    source = write_jsonl(tmp_path / "hooks.jsonl", count=1)

    result = invoke(str(source), "--config", str(tmp_path / "missing.toml"))

    assert result.exit_code == 2
    assert "No --target given" in result.output


def test_replay_command_rejects_bad_sample(tmp_path):
    source = write_jsonl(tmp_path / "hooks.jsonl", count=1)

    result = invoke(str(source), "--target", "http://127.0.0.1:9", "--sample", "abc")

    assert result.exit_code == 2
    assert "Invalid share 'abc'" in result.output


def test_replay_command_ledger_only_run_is_explained(tmp_path):
    run = tmp_path / "runs" / "demo-1"
    run.mkdir(parents=True)
    (run / "ledger.sqlite").write_bytes(b"")

    result = invoke(str(run), "--target", "http://127.0.0.1:9")

    assert result.exit_code == 2
    assert "not the body" in result.output


def test_replay_command_rejects_unknown_on_error(tmp_path):
    source = write_jsonl(tmp_path / "hooks.jsonl", count=1)

    result = invoke(str(source), "--target", "http://127.0.0.1:9", "--on-error", "ignore")

    assert result.exit_code == 2
    assert "Invalid --on-error 'ignore'; use one of stop, skip" in result.output


def test_replay_command_progress_bar_runs(sink, tmp_path):
    source = write_jsonl(tmp_path / "hooks.jsonl")

    result = runner.invoke(app, [str(source), "--target", sink.url, "--runs-dir", str(tmp_path)])

    assert result.exit_code == 0, result.output
    assert len(sink.received) == 3


def test_replay_command_rejects_bad_target(tmp_path):
    source = write_jsonl(tmp_path / "hooks.jsonl", count=1)

    result = invoke(str(source), "--target", "127.0.0.1:8080", "--runs-dir", str(tmp_path))

    assert result.exit_code == 2
    assert "Invalid target '127.0.0.1:8080'" in result.output


def test_replay_command_empty_capture_fails(sink, tmp_path):
    source = tmp_path / "empty.jsonl"
    source.write_text("", encoding="utf-8")

    result = invoke(str(source), "--target", sink.url, "--runs-dir", str(tmp_path / "runs"))

    assert result.exit_code == 2, result.output
    assert "contains no webhook delivery" in " ".join(result.output.split())
    assert sink.received == []
    assert not (tmp_path / "runs").exists()
