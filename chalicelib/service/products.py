"""Products as the API shows them: stock on hand, reserved and available."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from chalicelib.adapters.database import UnitOfWork
from chalicelib.adapters.tables import Product


def list_products() -> list[dict[str, Any]]:
    with UnitOfWork() as uow:
        return [_view(product) for product in uow.session.scalars(select(Product).order_by(Product.sku))]


def product_view(sku: str) -> dict[str, Any] | None:
    with UnitOfWork() as uow:
        product = uow.session.get(Product, sku)
        return _view(product) if product else None


def _view(product: Product) -> dict[str, Any]:
    return {
        "sku": product.sku,
        "name": product.name,
        "price_cents": product.price_cents,
        "on_hand": product.on_hand,
        "reserved": product.reserved,
        "available": product.available,
    }
