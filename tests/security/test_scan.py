"""The scanner finds a secret in each form it looks for, and nothing else."""

from __future__ import annotations

import base64

import pytest

from tests.security.scan import Needle, Scanner, secret_forms

SECRET = "seeded/secret+Value=4f1c9a7e"


@pytest.mark.parametrize("form", list(secret_forms(SECRET)))
def test_scanner_finds_each_form(form):
    content = b"before " + secret_forms(SECRET)[form] + b" after"

    findings = Scanner([Needle("secret", SECRET)]).scan_bytes(content, "sample")

    assert [finding.label for finding in findings] == ["secret"]


@pytest.mark.parametrize("user", ["", "u", "us", "shop", "shop-user"])
def test_scanner_finds_basic_auth_credentials(user):
    header = b"Authorization: Basic " + base64.b64encode(f"{user}:{SECRET}".encode())

    findings = Scanner([Needle("secret", SECRET)]).scan_bytes(header, "header")

    assert findings


def test_scanner_ignores_other_values():
    content = base64.b64encode(b"another-value/of+the=same-length") + b"another-value".hex().encode()

    findings = Scanner([Needle("secret", SECRET)]).scan_bytes(content, "sample")

    assert findings == []


def test_personal_data_is_looked_for_in_clear_only():
    forms = secret_forms("Ada Lovelace", encoded=False)

    assert "raw" in forms
    assert not any(name.startswith(("base64", "hex", "HEX")) for name in forms)
