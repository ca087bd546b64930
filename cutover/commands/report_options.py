"""Options of `cutover report` for the comparison configuration, reconciliation, formats and A/A runs.

`cutover/cli.py` declares these options on `report` and calls
`build_analysis_inputs` and `write_run_reports`; tests call the functions
directly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from compare.config import CompareConfig

# The comparator loads inside the functions, so that importing the CLI
# stays cheap for the commands that don't need it.

__all__ = [
    "AaOption",
    "CompareConfigOption",
    "FormatOption",
    "OrdersExportKeyOption",
    "OrdersExportOption",
    "ReportInputs",
    "ReportOptionError",
    "WorkersOption",
    "build_analysis_inputs",
    "parse_formats",
    "write_aa_calibration",
]

CompareConfigOption = Annotated[
    Path | None,
    typer.Option("--compare-config",
                 help="TOML file with \\[compare.criteria] thresholds and \\[compare.normalisation] "
                      "rules. --min-orders and --min-parity, when given, override it."),
]
OrdersExportOption = Annotated[
    Path | None,
    typer.Option("--orders-export",
                 help="The storefront's order list (CSV with a header row, or JSON) to reconcile "
                      "against: orders that reached neither flow or only one."),
]
OrdersExportKeyOption = Annotated[
    str | None,
    typer.Option("--orders-export-key",
                 help="Column or field of --orders-export with the order key. "
                      "Default: the first of id, order_id, Id, Name, name."),
]
FormatOption = Annotated[
    str,
    typer.Option("--format",
                 help="Report formats to write, comma-separated: md, json, html, junit."),
]
AaOption = Annotated[
    bool,
    typer.Option("--aa",
                 help="Treat the run as an A/A run (both sides ran the same flow): write the "
                      "noise calibration (noise.md, noise.json, noise.toml) instead of a verdict."),
]
WorkersOption = Annotated[
    int | None,
    typer.Option("--workers", min=1,
                 help="Processes that analyse a large run, each a range of order keys. The "
                      "verdict is the same with any number. Default: the CPUs available, at most 4; "
                      "runs under 250,000 events per process use one."),
]


class ReportOptionError(ValueError):
    """An option of `cutover report` is invalid. The message tells how to fix it."""


@dataclass(frozen=True)
class ReportInputs:
    config: CompareConfig
    # Keys of the storefront's export, or None when none was given.
    storefront_orders: set[str] | None


def parse_formats(text: str) -> tuple[str, ...]:
    """Split `--format md,json` into known format names, in the order given."""
    from compare.render import REPORT_FORMATS

    names = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in REPORT_FORMATS]
    if unknown or not names:
        raise ReportOptionError(
            f"Invalid --format {text!r}: unknown format(s) {', '.join(unknown) or '(none given)'}. "
            f"Use a comma-separated list of: {', '.join(REPORT_FORMATS)}."
        )
    return names


def build_analysis_inputs(
    compare_config: Path | None,
    orders_export: Path | None,
    orders_export_key: str | None = None,
    *,
    min_orders: int | None = None,
    min_parity: float | None = None,
) -> ReportInputs:
    """Read the configuration file and the order export; command-line thresholds win over the file."""
    from compare.completeness import OrderExportError, load_order_export
    from compare.config import CompareConfig, CompareConfigError, load_compare_config

    try:
        config = load_compare_config(compare_config) if compare_config else CompareConfig()
        overrides = {name: value for name, value in
                     (("min_orders", min_orders), ("min_parity", min_parity)) if value is not None}
        if overrides:
            config = replace(config, criteria=replace(config.criteria, **overrides))
    except CompareConfigError as exc:
        raise ReportOptionError(str(exc)) from exc
    except ValueError as exc:
        raise ReportOptionError(f"Invalid threshold option: {exc}") from exc

    try:
        storefront_orders = (load_order_export(orders_export, orders_export_key)
                             if orders_export else None)
    except OrderExportError as exc:
        raise ReportOptionError(str(exc)) from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise ReportOptionError(
            f"Can't read the order export {orders_export}: {exc}. Export it as UTF-8 CSV or JSON."
        ) from exc
    return ReportInputs(config, storefront_orders)


def write_aa_calibration(engine, run_id: str, inputs: ReportInputs, folder: Path) -> list[Path]:
    """Calibrate noise on an A/A run and write noise.md, noise.json and noise.toml into `folder`."""
    from compare.noise import calibrate_noise

    calibration = calibrate_noise(engine, run_id, inputs.config.normalisation)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in (("noise.md", calibration.markdown()), ("noise.json", calibration.to_json()),
                       ("noise.toml", calibration.toml())):
        path = folder / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
