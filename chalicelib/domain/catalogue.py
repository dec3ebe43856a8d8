"""The catalogue: the products a new shop starts with."""

from __future__ import annotations

from sqlalchemy.orm import Session

from chalicelib.adapters.tables import Product, StockBucket
from chalicelib.domain import stock as stock_buckets

SEED_PRODUCTS: tuple[tuple[str, str, int, int], ...] = (
    ("SKU-KEYBOARD", "Mechanical keyboard", 8_900, 1_000),
    ("SKU-MOUSE", "Wireless mouse", 2_500, 1_000),
    ("SKU-MONITOR", "27-inch monitor", 24_900, 200),
    ("SKU-HEADSET", "Noise-cancelling headset", 15_900, 300),
    ("SKU-WEBCAM", "HD webcam", 6_900, 500),
)


def seed(session: Session) -> int:
    """Insert the catalogue's products that are not there yet; returns how many were added."""
    added = 0
    for sku, name, price_cents, stock in SEED_PRODUCTS:
        if session.get(Product, sku) is None:
            session.add_all(add_product(sku, name, price_cents, stock))
            added += 1
    return added


def add_product(
    sku: str, name: str, price_cents: int, stock: int, buckets: int = stock_buckets.BUCKETS
) -> list[Product | StockBucket]:
    """A new product and its stock, split into `buckets` (docs/design.md §4.1)."""
    product = Product(sku=sku, name=name, price_cents=price_cents, initial_on_hand=stock, buckets=buckets)
    return [product, *stock_buckets.new_buckets(sku, stock, buckets)]
