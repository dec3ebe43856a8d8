"""Products as the API shows them: stock on hand, reserved and available."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from chalicelib.adapters.database import UnitOfWork
from chalicelib.adapters.tables import Product
from chalicelib.domain import catalogue


def seed_catalogue() -> int:
    """Insert the catalogue's products that are not there yet; how many were added.

    Two processes that start at once on one database (`make run` beside `make bench`) may both find a product
    missing: the one whose insert comes second waits for the other's commit, and then finds the key taken. It
    rolls back and looks again, and finds them there."""
    try:
        return _seed_once()
    except IntegrityError:
        return _seed_once()


def _seed_once() -> int:
    with UnitOfWork() as uow:
        added = catalogue.seed(uow.session)
        uow.commit()
        return added


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
