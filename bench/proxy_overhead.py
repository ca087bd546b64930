"""Primary-path cost of the shadow proxy: direct, plain mitmdump, mitmdump with the addon.

All three setups are measured in one run on this machine, against the same
aiohttp sink on loopback, with 1 KiB JSON POSTs from an aiohttp client in its
own process, at concurrency 1 and 32. The figures that matter are the ratios
between setups measured together; absolute numbers depend on the machine.

    .venv/bin/python bench/proxy_overhead.py [--requests 3000] [--out bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cutover.processes import ChildProcess, mitmdump_executable, wait_for_ports  # noqa: E402
from cutover.topology import free_ports  # noqa: E402

SINK = """
import sys
from aiohttp import web
async def answer(request):
    await request.read()
    return web.Response(text="ok")
app = web.Application()
app.router.add_route("*", "/{tail:.*}", answer)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""

CLIENT = """
import asyncio, json, sys, time
import aiohttp
url, total, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
body_template = '{"id":%d,"note":"' + "x" * 980 + '"}'
async def main():
    latencies = []
    counter = iter(range(total))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def worker():
            for index in counter:
                body = (body_template % (2**53 + index)).encode()
                started = time.perf_counter()
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as answer:
                    await answer.read()
                    assert answer.status == 200, answer.status
                latencies.append(time.perf_counter() - started)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    print(json.dumps({"elapsed_s": elapsed, "latencies": latencies}))
asyncio.run(main())
"""


def run_client(url: str, total: int, concurrency: int) -> dict:
    output = subprocess.run(
        [sys.executable, "-c", CLIENT, url, str(total), str(concurrency)],
        check=True, capture_output=True, text=True, timeout=600,
    ).stdout
    data = json.loads(output)
    latencies = data["latencies"]
    return {
        "rps": total / data["elapsed_s"],
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def shadow_config(folder: Path, ingress: int, legacy: int, candidate: int) -> Path:
    path = folder / "shadow.json"
    path.write_text(json.dumps({
        "ledger": {"url": f"sqlite:///{folder / 'ledger.sqlite'}", "run_id": "bench"},
        "route": [{
            "name": "ingress", "role": "ingress", "listen": f"127.0.0.1:{ingress}",
            "upstream": f"http://127.0.0.1:{legacy}", "mirror_to": f"http://127.0.0.1:{candidate}",
        }],
    }), encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="Requests per measurement.")
    parser.add_argument("--out", type=Path, default=None,
                        help="Markdown file to append the results to (default: print only).")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="cutover-bench-"))
    legacy, candidate, plain, addon = free_ports(4)
    children: list[ChildProcess] = []
    try:
        for port in (legacy, candidate):
            children.append(ChildProcess("sink", [sys.executable, "-c", SINK, str(port)],
                                         folder / f"sink-{port}.log"))
        wait_for_ports([legacy, candidate])
        mitmdump = mitmdump_executable()
        common = ["--quiet", "--set", "flow_detail=0", "--set", "termlog_verbosity=error"]
        children_by_name: dict[str, int] = {}
        children.append(ChildProcess("mitmdump", [
            mitmdump, *common, "--mode", f"reverse:http://127.0.0.1:{legacy}@127.0.0.1:{plain}",
        ], folder / "plain.log"))
        children_by_name["mitmdump"] = children[-1].process.pid
        config = shadow_config(folder, addon, legacy, candidate)
        children.append(ChildProcess("mitmdump+addon", [
            mitmdump, *common, "-s", str(ROOT / "shadow" / "addon.py"),
            "--set", f"cutover_config={config}",
            "--mode", f"reverse:http://127.0.0.1:{legacy}@127.0.0.1:{addon}",
        ], folder / "addon.log"))
        children_by_name["mitmdump+addon"] = children[-1].process.pid
        wait_for_ports([plain, addon], timeout_s=30)
        time.sleep(1.0)

        setups = {
            "direct": f"http://127.0.0.1:{legacy}/webhooks/orders/create",
            "mitmdump": f"http://127.0.0.1:{plain}/webhooks/orders/create",
            "mitmdump + addon": f"http://127.0.0.1:{addon}/webhooks/orders/create",
        }
        proxies = {"mitmdump": children_by_name["mitmdump"],
                   "mitmdump + addon": children_by_name["mitmdump+addon"]}
        results: dict[tuple[str, int], dict] = {}
        for concurrency in (1, 32):
            for name, url in setups.items():
                run_client(url, min(300, args.requests), concurrency)  # warm-up
                proxy = proxies.get(name)
                before = _cpu(proxy) if proxy else None
                results[(name, concurrency)] = run_client(url, args.requests, concurrency)
                time.sleep(1.0)  # the sidecar finishes its mirror copies and ledger writes
                if proxy:
                    proxy_s, sidecar_s = (a - b for a, b in zip(_cpu(proxy), before, strict=True))
                    results[(name, concurrency)]["proxy_us"] = proxy_s / args.requests * 1e6
                    results[(name, concurrency)]["sidecar_us"] = sidecar_s / args.requests * 1e6
                print(name, concurrency, results[(name, concurrency)], flush=True)
    finally:
        for child in reversed(children):
            child.stop(20)

    report = render(results, args.requests)
    print(report)
    if args.out:
        with args.out.open("a", encoding="utf-8") as handle:
            handle.write("\n" + report)


def _cpu(pid: int) -> tuple[float, float]:
    """(CPU s of the proxy process, CPU s of its child processes, the sidecar)."""
    return cpu_seconds(pid), sum(cpu_seconds(child) for child in child_pids(pid))


def render(results: dict[tuple[str, int], dict], requests: int) -> str:
    lines = [
        f"### Proxy overhead, {time.strftime('%Y-%m-%d')}",
        "",
        (f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}. "
         f"Command: `.venv/bin/python bench/proxy_overhead.py --requests {requests}`."),
        "",
        ("| setup | concurrency | req/s | p50 ms | p99 ms | req/s vs mitmdump "
         "| p50 added vs mitmdump | proxy CPU µs/req | sidecar CPU µs/req |"),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (name, concurrency), figures in results.items():
        base = results[("mitmdump", concurrency)]
        lines.append(
            f"| {name} | {concurrency} | {figures['rps']:.0f} | {figures['p50_ms']:.2f} | "
            f"{figures['p99_ms']:.2f} | {figures['rps'] / base['rps']:.2f} | "
            f"{figures['p50_ms'] - base['p50_ms']:+.2f} ms | "
            f"{_micro(figures.get('proxy_us'))} | {_micro(figures.get('sidecar_us'))} |"
        )
    return "\n".join(lines) + "\n"


def _micro(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


if __name__ == "__main__":
    main()
