"""Redaction of personal data before it reaches the ledger."""

from __future__ import annotations

import json

from cutover.privacy import HASH_PREFIX, Redactor


def test_redactor_hashes_personal_fields_and_keeps_product_data():
    order = {
        "id": 2**62,
        "email": "jane.doe@example.com",
        "customer": {"first_name": "Jane", "last_name": "Doe", "name": "Jane Doe", "phone": "+1 555 0100"},
        "shipping_address": {"name": "Jane Doe", "address1": "1 Main St", "zip": "10001", "city": "Springfield"},
        "line_items": [{"name": "Café crème 250 g", "sku": "CAF-250", "quantity": 2}],
    }
    redacted = Redactor(b"k" * 32).redact(order)
    text = json.dumps(redacted, ensure_ascii=False)

    for secret in ("jane.doe@example.com", "Jane", "Doe", "555 0100", "1 Main St", "10001"):
        assert secret not in text
    assert redacted["id"] == 2**62
    assert redacted["line_items"][0]["name"] == "Café crème 250 g"
    assert redacted["shipping_address"]["city"] == "Springfield"
    assert redacted["email"].startswith(HASH_PREFIX)


def test_redactor_hashes_equal_values_equally():
    redactor = Redactor(b"k" * 32)
    first = redactor.redact({"email": "a@example.com"})
    second = redactor.redact({"to": [{"email": "a@example.com"}]})
    assert first["email"] == second["to"][0]["email"]


def test_redactor_hashes_emails_inside_free_text():
    redacted = Redactor(b"k" * 32).redact({"memo": "call jane@example.com before 5"})
    assert "jane@example.com" not in redacted["memo"]
    assert redacted["memo"].startswith("call h:")


def test_redactor_hashes_nested_personal_objects():
    redacted = Redactor(b"k" * 32).redact({"shipAddress": {"addr1": "1 Main St", "country": "US"}})
    assert redacted["shipAddress"]["country"].startswith(HASH_PREFIX)
    assert "1 Main St" not in json.dumps(redacted)


def test_redactors_with_different_keys_disagree():
    assert Redactor(b"a" * 32).hash_value("x") != Redactor(b"b" * 32).hash_value("x")


def test_redactor_hashes_woocommerce_billing_and_shipping():
    order = {"billing": {"first_name": "John", "address_1": "969 Market", "postcode": "94103",
                         "phone": "(555) 555-5555", "city": "San Francisco"},
             "shipping": {"name": "John Doe", "address_2": "Apt 4"},
             "customer_ip_address": "203.0.113.9"}
    text = json.dumps(Redactor(b"k" * 32).redact(order))
    for personal in ("John", "969 Market", "94103", "555-5555", "Apt 4", "203.0.113.9"):
        assert personal not in text
    assert "San Francisco" in text


def test_redactor_hashes_adobe_sap_and_business_central_names():
    document = {
        "customer_firstname": "Veronica", "customer_lastname": "Costello", "telephone": "5555",
        "to_Partner": [{"FullName": "Jane Doe", "StreetName": "Main St", "PostalCode": "10001",
                        "EmailAddress": "jane@example.com", "Customer": "10100001"}],
        "shipToName": "Jane Doe", "sellToAddressLine1": "1 Main St", "billToPostCode": "10001",
    }
    redacted = Redactor(b"k" * 32).redact(document)
    text = json.dumps(redacted)
    for personal in ("Veronica", "Costello", "5555", "Jane Doe", "Main St", "10001"):
        assert personal not in text
    assert redacted["to_Partner"][0]["Customer"] == "10100001"


def test_redactor_hashes_postmark_recipient_strings():
    redacted = Redactor(b"k" * 32).redact({"To": "Jane Doe <jane@example.com>",
                                          "Cc": "ops@example.com", "Subject": "Order 1001"})
    assert redacted["To"].startswith(HASH_PREFIX)
    assert "Jane" not in json.dumps(redacted)
    assert redacted["Subject"] == "Order 1001"


def test_redactor_hashes_klaviyo_profile():
    event = {"profile": {"data": {"attributes": {"first_name": "Sarah", "phone_number": "+15005550006",
                                                 "location": {"address1": "89 E 42nd St"}}}}}
    text = json.dumps(Redactor(b"k" * 32).redact(event))
    for personal in ("Sarah", "+15005550006", "89 E 42nd St"):
        assert personal not in text


def test_redaction_key_from_env_is_shared(monkeypatch):
    from cutover.privacy import REDACTION_KEY_ENV, redaction_key_from_env

    monkeypatch.setenv(REDACTION_KEY_ENV, "shared-secret-value")
    first, second = Redactor(redaction_key_from_env()), Redactor(redaction_key_from_env())
    assert first.hash_value("jane@example.com") == second.hash_value("jane@example.com")
    monkeypatch.delenv(REDACTION_KEY_ENV)
    assert redaction_key_from_env() is None
