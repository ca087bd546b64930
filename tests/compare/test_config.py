"""Criteria and normalisation from a TOML file, and the messages of invalid ones."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from compare import DEFAULT_IGNORE_PATHS, CompareConfigError, load_compare_config

FULL = """
[compare.criteria]
min_orders = 500
min_hours_covered = 24
min_parity = 0.995
confirmation_sla_ms = 30000

[compare.normalisation]
extra_ignore_paths = ["\\\\['custbody_channel'\\\\]"]
ignore_order = false
decimal_tolerance = 0.01
noise_paths = ["^root\\\\['shipAddress'\\\\]$"]

[compare.normalisation.field_map]
"lines" = "item.items"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "compare.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_full_config_is_read(tmp_path: Path) -> None:
    config = load_compare_config(write(tmp_path, FULL))

    assert config.criteria.min_orders == 500
    assert config.criteria.min_hours_covered == 24
    assert config.criteria.min_parity == 0.995
    assert config.criteria.confirmation_sla_ms == 30000
    assert config.criteria.max_open_gaps == 0
    normalisation = config.normalisation
    assert normalisation.ignore_paths == (*DEFAULT_IGNORE_PATHS, r"\['custbody_channel'\]")
    assert normalisation.ignore_order is False
    assert normalisation.decimal_tolerance == Decimal("0.01")
    assert normalisation.noise_paths == (r"^root\['shipAddress'\]$",)
    assert normalisation.field_map == (("lines", "item.items"),)


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    config = load_compare_config(write(tmp_path, ""))

    assert config.criteria.min_orders == 100
    assert config.normalisation.ignore_paths == DEFAULT_IGNORE_PATHS


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("[compare.criteria]\nmin_parity = 99.9\n",
                     r"min_parity must be a share from 0 to 1, but got 99\.9\. Write shares as "
                     r"fractions: 0\.999", id="percent-for-share"),
        pytest.param("[compare.criteria]\nmin_orders = \"100\"\n",
                     r"min_orders = '100' .* must be an integer, such as min_orders = 100",
                     id="string-for-int"),
        pytest.param("[compare.criteria]\nmin_order = 100\n",
                     r"Unknown key\(s\) min_order in \[compare.criteria\].*min_orders",
                     id="unknown-key"),
        pytest.param("[compare.normalisation]\nignore_paths = \"memo\"\n",
                     r"ignore_paths = 'memo' .* must be a list of regular expressions",
                     id="string-for-list"),
        pytest.param("[compare.normalisation]\nignore_paths = [\"[\"]\n",
                     r"Invalid ignore path '\['", id="bad-regex"),
        pytest.param("[compare.normalisation]\ndecimal_tolerance = -0.01\n",
                     r"decimal_tolerance must be a number above 0", id="negative-tolerance"),
        pytest.param("[compare.normalisation.field_map]\n\"lines[]\" = \"item.items\"\n",
                     r"both paths must share the part up to their first \[\]", id="field-map-list"),
        pytest.param("[compare.criteria]\nmin_parity = 0.9\nmarginal_parity = 0.8\n",
                     r"min_parity \(0\.9\) must not be above marginal_parity", id="marginal-order"),
        pytest.param("[compare\n", r"Invalid TOML in .*compare.toml", id="bad-toml"),
    ],
)
def test_invalid_config_names_key_value_and_fix(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CompareConfigError, match=message):
        load_compare_config(write(tmp_path, text))


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CompareConfigError, match="Can't read the comparison configuration"):
        load_compare_config(tmp_path / "absent.toml")
