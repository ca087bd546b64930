"""Redaction of personal data before anything reaches the ledger or a report.

Values under personal-data keys (names, emails, phones, addresses) are
replaced by a keyed hash, so two flows that send the same customer still
compare equal while the value itself is never stored. Email addresses are
also hashed wherever they appear inside other strings.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from typing import Any

__all__ = ["HASH_PREFIX", "REDACTION_KEY_ENV", "Redactor", "redaction_key_from_env"]

# Environment variable with the keyed hash's key, shared by every proxy of a
# run so that their hashes of one customer match; never logged or stored.
REDACTION_KEY_ENV = "CUTOVER_REDACTION_KEY"

HASH_PREFIX = "h:"

# Keys whose value is personal data wherever they appear (compared in lower
# case). Spellings of Shopify, BigCommerce, WooCommerce, Adobe Commerce,
# NetSuite, SAP S/4HANA, Business Central, SendGrid, Postmark and Klaviyo.
PERSONAL_KEYS = frozenset(
    {
        "email", "contact_email", "customer_email", "phone", "mobile", "fax",
        "first_name", "last_name", "firstname", "lastname", "middle_name",
        "address1", "address2", "addr1", "addr2", "addr3", "street", "zip",
        "postal_code", "postcode", "company", "addressee", "addrphone",
        "shipaddress", "billaddress", "browser_ip", "client_ip",
        # BigCommerce, WooCommerce, Klaviyo
        "street_1", "street_2", "address_1", "address_2", "phone_number",
        "customer_ip_address", "customer_user_agent", "ip_address",
        # Adobe Commerce
        "customer_firstname", "customer_lastname", "customer_middlename",
        "customer_dob", "customer_taxvat", "telephone", "remote_ip", "vat_id",
        # SAP S/4HANA (OData property names)
        "emailaddress", "phonenumber", "mobilephonenumber", "faxnumber", "fullname",
        "personfamilyname", "persongivenname", "streetname", "housenumber",
        "postalcode", "organisationname1", "organisationname2",
        # Business Central
        "customername", "selltoaddressline1", "selltoaddressline2", "selltopostcode",
        "billtoname", "billtoaddressline1", "billtoaddressline2", "billtopostcode",
        "shiptoname", "shiptocontact", "shiptoaddressline1", "shiptoaddressline2",
        "shiptopostcode", "selltocontact",
    }
)

# `name` is a person's name only inside these objects; elsewhere (a line
# item, a shipping method) it is product data and stays readable.
PERSON_CONTAINERS = frozenset(
    {
        "customer", "billing_address", "shipping_address", "default_address",
        "to", "cc", "bcc", "reply_to", "from", "personalizations", "entity",
        "recipient", "contact", "billing", "shipping", "billing_addresses",
        "shipping_addresses", "addresses", "profile", "replyto",
    }
)

# A bare string under one of these keys is a recipient ("Jane Doe
# <jane@example.com>" in Postmark's `To`), so the whole string is hashed.
RECIPIENT_KEYS = frozenset({"to", "cc", "bcc", "from", "reply_to", "replyto"})

EMAIL_PATTERN = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def redaction_key_from_env() -> bytes | None:
    """Return the shared redaction key from the environment, or None for a random one."""
    value = os.environ.get(REDACTION_KEY_ENV, "")
    return value.encode("utf-8") if value else None


class Redactor:
    """Replace personal data in parsed JSON with keyed hashes.

    The key lives only in memory. Without one, a random key is drawn, so
    hashes compare equal within one process and are useless to anyone else.
    """

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else os.urandom(32)

    def hash_value(self, value: Any) -> str:
        digest = hmac.new(self._key, str(value).encode("utf-8"), hashlib.sha256)
        return HASH_PREFIX + digest.hexdigest()[:16]

    def redact(self, value: Any, *, _personal: bool = False, _in_person: bool = False) -> Any:
        """Return a copy of `value` with personal data hashed."""
        if isinstance(value, dict):
            if _personal:
                return {key: self.redact(item, _personal=True) for key, item in value.items()}
            return {key: self._redact_item(key, item, _in_person) for key, item in value.items()}
        if isinstance(value, list):
            return [self.redact(item, _personal=_personal, _in_person=_in_person) for item in value]
        if value is None or isinstance(value, bool):
            return value
        if _personal:
            return self.hash_value(value)
        if isinstance(value, str) and "@" in value:
            return EMAIL_PATTERN.sub(lambda match: self.hash_value(match.group(0)), value)
        return value

    def _redact_item(self, key: str, item: Any, in_person: bool) -> Any:
        lowered = key.lower()
        personal = (
            lowered in PERSONAL_KEYS
            or (in_person and lowered == "name")
            or (lowered in RECIPIENT_KEYS and isinstance(item, str))
        )
        in_person = in_person or lowered in PERSON_CONTAINERS
        return self.redact(item, _personal=personal, _in_person=in_person)
