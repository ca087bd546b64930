"""Seeded Shopify-shaped orders and their wire encoding.

`make_orders` builds `orders/create` payloads that exercise what breaks
naive integrations: ids above 2^53, non-ASCII titles and names, and notes
with characters that Shopify escapes. `encode_order` writes them the way
Shopify does, so an HMAC over the bytes breaks on any parse and re-dump.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

__all__ = ["SHOP_DOMAIN", "encode_order", "make_orders"]

SHOP_DOMAIN = "cutover-sandbox.myshopify.com"

# Shopify ids are 64-bit integers; ids above 2^53 lose precision in any
# parser that reads JSON numbers as doubles.
MIN_ID = 2**53 + 1
MAX_ID = 2**62

CENT = Decimal("0.01")
TAX_RATE = Decimal("0.08875")
CURRENCY = "USD"
# The sandbox shop's time zone: created_at carries this offset.
SHOP_TIMEZONE = timezone(timedelta(hours=-5))
FIRST_ORDER_AT = datetime(2025, 11, 28, 6, 0, 0, tzinfo=SHOP_TIMEZONE)

# (sku, title, price)
CATALOG = [
    ("COF-250-CC", "Café crème – 250 g", "12.90"),
    ("TEE-UNI-JP", "Tee 'Ünïcödé' 日本", "24.00"),
    ("MUG-ENAMEL", "Enamel mug “Bergfrühstück”", "19.90"),
    ("TEA-MATCHA", "Matcha 抹茶 – 40 g tin", "31.50"),
    ("SOCK-3PK", "Wool socks, 3 pack (Größe 42–45)", "17.45"),
    ("BAG-TOTE", "Tote bag <limited> & signed", "9.99"),
    ("CHOC-70", "Dark chocolate 70 % – Ørsted edition", "4.35"),
    ("GIFT-CARD", "Gift card €/$ 50", "50.00"),
]

# (first name, last name, ASCII mailbox)
CUSTOMERS = [
    ("Zoë", "Müller", "zoe.mueller"),
    ("José", "Núñez", "jose.nunez"),
    ("Søren", "Kierkegård", "soren.k"),
    ("Aoife", "O'Brien", "aoife.obrien"),
    ("美咲", "佐藤", "misaki.sato"),
    ("Ada", "Lovelace", "ada"),
]

# (address1, city, zip, country code)
ADDRESSES = [
    ("12 Rue de l'Église", "Lyon", "69002", "FR"),
    ("Hauptstraße 5", "München", "80331", "DE"),
    ("350 5th Ave", "New York", "10118", "US"),
    ("1-1 Marunouchi", "東京", "100-0005", "JP"),
    ("7 Harbour St/Unit 4", "Dún Laoghaire", "A96 K2Y0", "IE"),
]

NOTES = [
    "Gift wrap please / leave at the back door & ring twice",
    "Deliver <after 5pm> / call first & wait",
    "No invoice in the parcel / it's a gift & a surprise",
]

# Characters Shopify writes as escapes in webhook bodies. json.dumps never
# emits these characters outside a string, so replacing them in its output
# only touches string contents.
SHOPIFY_ESCAPES = {
    "/": "\\/",
    "&": "\\u0026",
    "<": "\\u003c",
    ">": "\\u003e",
}


def make_orders(seed: int, count: int, start_number: int = 1001) -> list[dict[str, Any]]:
    """Build `count` orders numbered from `start_number`.

    Each order depends only on the seed and its order number, so a batch
    that continues an earlier one (a later `start_number`) adds new orders
    and leaves the earlier ones as they were.
    """
    if count < 0:
        raise ValueError(f"count must be 0 or more, but got {count!r}")
    return [_make_order(seed, number) for number in range(start_number, start_number + count)]


def encode_order(order: dict[str, Any]) -> bytes:
    """Encode an order as Shopify writes webhook bodies.

    Compact separators, non-ASCII characters as UTF-8, and `/`, `&`, `<`,
    `>` as escapes. The result is valid JSON that `json.loads` reads back to
    an equal dict, with integer ids intact.
    """
    text = json.dumps(order, ensure_ascii=False, separators=(",", ":"))
    for char, escape in SHOPIFY_ESCAPES.items():
        text = text.replace(char, escape)
    return text.encode("utf-8")


def _make_order(seed: int, number: int) -> dict[str, Any]:
    rng = random.Random(f"{seed}:{number}")
    order_id = rng.randint(MIN_ID, MAX_ID)
    first_name, last_name, mailbox = rng.choice(CUSTOMERS)
    email = f"{mailbox}+{number}@example.com"
    phone = f"+1 555-01{rng.randint(0, 99):02d}"
    billing = _make_address(rng, f"{first_name} {last_name}", phone)
    shipping = billing if rng.random() < 0.7 else _make_address(rng, f"{first_name} {last_name}", phone)
    line_items = _make_line_items(rng)

    subtotal = sum((Decimal(item["price"]) * item["quantity"] for item in line_items), Decimal(0))
    tax = (subtotal * TAX_RATE).quantize(CENT, rounding=ROUND_HALF_EVEN)
    created_at = FIRST_ORDER_AT + timedelta(seconds=(number - 1) * 37 + rng.randint(0, 30))

    return {
        "id": order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "order_number": number,
        "name": f"#{number}",
        "email": email,
        "created_at": created_at.isoformat(),
        "currency": CURRENCY,
        "subtotal_price": _money(subtotal),
        "total_tax": _money(tax),
        "total_price": _money(subtotal + tax),
        "financial_status": "paid",
        "customer": {
            "id": rng.randint(MIN_ID, MAX_ID),
            "first_name": first_name,
            "last_name": last_name,
            "email": email,
            "phone": phone,
        },
        "billing_address": billing,
        "shipping_address": dict(shipping),
        "line_items": line_items,
        "note": rng.choice(NOTES),
    }


def _make_address(rng: random.Random, name: str, phone: str) -> dict[str, str]:
    address1, city, zip_code, country_code = rng.choice(ADDRESSES)
    return {
        "name": name,
        "address1": address1,
        "city": city,
        "zip": zip_code,
        "country_code": country_code,
        "phone": phone,
    }


def _make_line_items(rng: random.Random) -> list[dict[str, Any]]:
    products = rng.sample(CATALOG, k=rng.randint(2, 4))
    return [
        {
            "id": rng.randint(MIN_ID, MAX_ID),
            "sku": sku,
            "title": title,
            "quantity": rng.randint(1, 3),
            "price": price,
        }
        for sku, title, price in products
    ]


def _money(amount: Decimal) -> str:
    return str(amount.quantize(CENT, rounding=ROUND_HALF_EVEN))
