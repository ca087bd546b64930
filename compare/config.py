"""Criteria and normalisation rules from a TOML file.

```toml
[compare.criteria]
min_orders = 1000
min_hours_covered = 24         # hours from the first to the last webhook
min_burst_orders_per_min = 120 # the run must include a burst this fast
min_parity = 0.999             # shares are fractions from 0 to 1
confirmation_sla_ms = 30000

[compare.normalisation]
extra_ignore_paths = ["\\['custbody_channel'\\]"]  # added to the defaults
ignore_order = true
decimal_tolerance = 0.01
noise_paths = ["^root\\['shipAddress'\\]$"]         # learned by an A/A run

[compare.normalisation.field_map]                  # candidate path = legacy path
"lines" = "item.items"
"item.items[].sku" = "item.items[].item.externalId"
```

Every key is optional. `ignore_paths` replaces the default ignore rules,
`extra_ignore_paths` adds to them. Errors name the file, the key, the value
and how to fix it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from compare.parity import DEFAULT_IGNORE_PATHS, Normalisation
from compare.verdict import Criteria

__all__ = ["CompareConfig", "CompareConfigError", "load_compare_config", "parse_compare_config"]

_NORMALISATION_KEYS = {
    "ignore_paths": "a list of regular expressions, such as [\"\\\\['memo'\\\\]\"]",
    "extra_ignore_paths": "a list of regular expressions, such as [\"\\\\['memo'\\\\]\"]",
    "noise_paths": "a list of regular expressions, such as [\"\\\\['memo'\\\\]\"]",
    "ignore_order": "true or false",
    "decimal_numbers": "true or false",
    "decimal_tolerance": "a number above 0, such as 0.01",
    "field_map": "a table of candidate path = legacy path, such as \"lines\" = \"item.items\"",
}


class CompareConfigError(ValueError):
    """The comparison configuration file is invalid."""


@dataclass(frozen=True)
class CompareConfig:
    criteria: Criteria = field(default_factory=Criteria)
    normalisation: Normalisation = field(default_factory=Normalisation)


def load_compare_config(path: Path) -> CompareConfig:
    """Read `[compare.criteria]` and `[compare.normalisation]` from a TOML file."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CompareConfigError(f"Can't read the comparison configuration {path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise CompareConfigError(
            f"Can't read the comparison configuration {path}: it is not UTF-8 text (invalid byte "
            f"at offset {exc.start}). Save it as UTF-8 TOML."
        ) from exc
    except ValueError as exc:  # TOMLDecodeError, or an integer of more than 4300 digits
        raise CompareConfigError(f"Invalid TOML in {path}: {exc}") from exc
    if document and "compare" not in document:
        # A file with only [criteria] or [normalisation] tables would
        # otherwise give the defaults silently.
        raise CompareConfigError(
            f"{path} has no [compare] table (its top-level keys are {', '.join(sorted(document))}); "
            "write the settings under [compare.criteria] and [compare.normalisation]."
        )
    return parse_compare_config(document, str(path))


def parse_compare_config(document: dict[str, Any], source: str = "<config>") -> CompareConfig:
    """Build the configuration from a parsed TOML document."""
    section = document.get("compare", {})
    _check_table(section, "[compare]", source)
    _check_keys(section, {"criteria", "normalisation"}, "[compare]", source)
    return CompareConfig(
        criteria=_criteria(section.get("criteria", {}), source),
        normalisation=_normalisation(section.get("normalisation", {}), source),
    )


def _criteria(table: Any, source: str) -> Criteria:
    where = "[compare.criteria]"
    _check_table(table, where, source)
    types = {item.name: item.type for item in fields(Criteria)}
    _check_keys(table, set(types), where, source)

    values: dict[str, Any] = {}
    for key, value in table.items():
        wants_int = types[key] in (int, "int")
        if isinstance(value, bool) or not isinstance(value, int | float) or (
                wants_int and not isinstance(value, int)):
            example = "100" if wants_int else "0.999"
            raise CompareConfigError(
                f"Invalid {where} {key} = {value!r} in {source}: it must be "
                f"{'an integer' if wants_int else 'a number'}, such as {key} = {example}."
            )
        values[key] = value
    try:
        return Criteria(**values)
    except ValueError as exc:
        raise CompareConfigError(f"Invalid {where} in {source}: {exc}. {_criteria_hint(exc)}") from exc


def _criteria_hint(exc: ValueError) -> str:
    text = str(exc)
    if "share from 0 to 1" in text:
        return "Write shares as fractions: 0.999 for 99.9 %."
    if "must not be above" in text:
        return "A marginal bound must be at least as strict as the one it refines."
    return "Use a value within the stated range."


def _normalisation(table: Any, source: str) -> Normalisation:
    where = "[compare.normalisation]"
    _check_table(table, where, source)
    _check_keys(table, set(_NORMALISATION_KEYS), where, source)

    for key, value in table.items():
        if not _has_shape(key, value):
            raise CompareConfigError(
                f"Invalid {where} {key} = {value!r} in {source}: it must be "
                f"{_NORMALISATION_KEYS[key]}."
            )
    if "ignore_paths" in table and "extra_ignore_paths" in table:
        raise CompareConfigError(
            f"{where} in {source} sets both ignore_paths and extra_ignore_paths: use "
            "ignore_paths to replace the default rules, or extra_ignore_paths to add to them."
        )

    ignore_paths = tuple(table.get("ignore_paths", DEFAULT_IGNORE_PATHS))
    ignore_paths += tuple(table.get("extra_ignore_paths", ()))
    try:
        return Normalisation(
            ignore_paths=ignore_paths,
            ignore_order=table.get("ignore_order", True),
            decimal_numbers=table.get("decimal_numbers", True),
            decimal_tolerance=table.get("decimal_tolerance"),
            field_map=tuple(table.get("field_map", {}).items()),
            noise_paths=tuple(table.get("noise_paths", ())),
        )
    except ValueError as exc:
        raise CompareConfigError(f"Invalid {where} in {source}: {exc}") from exc


def _has_shape(key: str, value: Any) -> bool:
    if key.endswith("_paths"):
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    if key in ("ignore_order", "decimal_numbers"):
        return isinstance(value, bool)
    if key == "decimal_tolerance":
        return isinstance(value, int | float | str) and not isinstance(value, bool)
    if key == "field_map":
        return isinstance(value, dict) and all(isinstance(item, str) for item in value.values())
    return False


def _check_table(value: Any, where: str, source: str) -> None:
    if not isinstance(value, dict):
        raise CompareConfigError(
            f"Invalid {where} in {source}: expected a table, but got {value!r}. "
            f"Write it as a {where} section."
        )


def _check_keys(table: dict[str, Any], known: set[str], where: str, source: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise CompareConfigError(
            f"Unknown key(s) {', '.join(unknown)} in {where} of {source}; "
            f"expected some of: {', '.join(sorted(known))}."
        )
