"""Run the sandbox stack until SIGINT or SIGTERM: `python -m sandbox`.

Once every app listens, one line goes to stdout:

    sandbox ready storefront=18100 legacy=18101 gated=18102 erp=18103 erp_candidate=18104 email=18105

Logs go to stderr. The exit status is 0 after a clean stop on a signal, 2
for invalid settings and 1 when an app can't listen. The webhook signing
secret comes from the environment variable CUTOVER_SANDBOX_WEBHOOK_SECRET
when it is set, and from the settings otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys
from pathlib import Path

from sandbox import WEBHOOK_SECRET_ENV
from sandbox.settings import SandboxSettings
from sandbox.stack import APP_NAMES, StackError, check_settings, start_stack

log = logging.getLogger("sandbox")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Run the cutover sandbox: storefront, legacy and gated flows, two ERP accounts and an "
        "email service, on the settings' host (127.0.0.1 by default), until SIGINT or SIGTERM.",
    )
    parser.add_argument(
        "--settings",
        type=Path,
        metavar="FILE",
        help="JSON file with SandboxSettings fields (as `cutover demo` writes it). Without it, the defaults apply.",
    )
    parser.add_argument(
        "--port-base",
        type=int,
        metavar="N",
        help="Listen on ports N to N+5, in the order " + ", ".join(APP_NAMES) + "; overrides the settings file's ports.",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="Level of the log lines written to stderr (default: INFO).",
    )
    return parser


def apply_port_base(settings: SandboxSettings, port_base: int) -> SandboxSettings:
    """Return a copy of `settings` with the six ports set to port_base .. port_base+5."""
    if not 1 <= port_base <= 65535 - len(APP_NAMES) + 1:
        raise ValueError(f"--port-base must be between 1 and {65535 - len(APP_NAMES) + 1}, but got {port_base}")
    ports = {f"{name}_port": port_base + offset for offset, name in enumerate(APP_NAMES)}
    return dataclasses.replace(settings, **ports)


async def run(settings: SandboxSettings) -> None:
    """Start the stack, print the ready line, and stop on SIGINT or SIGTERM."""
    stack = await start_stack(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)

    ports = " ".join(f"{name}={port}" for name, port in stack.ports.items())
    print(f"sandbox ready {ports}", flush=True)
    try:
        await stop.wait()
        log.info("Stop signal received; stopping the sandbox")
    finally:
        await stack.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    try:
        settings = SandboxSettings.from_file(args.settings) if args.settings else SandboxSettings()
        if args.port_base is not None:
            settings = apply_port_base(settings, args.port_base)
        if os.environ.get(WEBHOOK_SECRET_ENV):
            settings = dataclasses.replace(settings, webhook_secret=os.environ[WEBHOOK_SECRET_ENV])
        check_settings(settings)
    except (TypeError, ValueError) as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2

    try:
        asyncio.run(run(settings))
    except StackError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
