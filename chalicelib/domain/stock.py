"""A product's stock, split into buckets (docs/design.md §4.1): a reservation draws its units from one bucket, picked
at random, so concurrent sales of one product lock different rows. Releasing, selling and restocking touch the bucket
the units were drawn from. A reservation larger than any one bucket gathers the product's available units into one
bucket first, under a lock on all of them; it is refused only when the product as a whole lacks the units.

Every change is one conditional UPDATE of one bucket row, whose WHERE the database re-checks against the latest
committed row (READ COMMITTED on both engines), so no bucket ever holds more reserved than on hand.
"""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from chalicelib.adapters.tables import StockBucket

BUCKETS = 16
"""Buckets a new product's stock is split into."""

_pick = random.SystemRandom()


def new_buckets(sku: str, stock: int, buckets: int = BUCKETS) -> list[StockBucket]:
    """`stock` split as evenly as it goes into `buckets` rows."""
    share, rest = divmod(stock, buckets)
    return [
        StockBucket(sku=sku, bucket=number, on_hand=share + (number < rest), reserved=0) for number in range(buckets)
    ]


def reserve(session: Session, sku: str, quantity: int, first: int) -> int | None:
    """Hold `quantity` units in one bucket, trying `first` before the others; the bucket, or None when the
    product has fewer units available than that."""
    return _draw(session, sku, quantity, first, reserved=quantity)


def first_bucket(buckets: int) -> int:
    """The bucket a reservation tries first: any, so that concurrent ones spread."""
    return _pick.randrange(buckets)


def sell(session: Session, sku: str, bucket: int, quantity: int) -> None:
    """Held units leave stock."""
    _change(session, sku, bucket, on_hand=-quantity, reserved=-quantity)


def release(session: Session, sku: str, bucket: int, quantity: int) -> None:
    """Held units become available again."""
    _change(session, sku, bucket, reserved=-quantity)


def put_back(session: Session, sku: str, bucket: int, quantity: int) -> None:
    """Units come back on hand (a cancelled sale, a return)."""
    _change(session, sku, bucket, on_hand=quantity)


def take_back(session: Session, sku: str, bucket: int, quantity: int) -> None:
    """Units put back leave again (a cancelled return): from `bucket` if it has them available, else from any
    bucket that has; if none has, `bucket`'s constraint refuses it (the units were sold meanwhile)."""
    if _draw(session, sku, quantity, bucket, on_hand=-quantity) is None:
        _change(session, sku, bucket, on_hand=-quantity)


def available(session: Session, sku: str) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(StockBucket.on_hand - StockBucket.reserved), 0)).where(StockBucket.sku == sku)
    )
    return int(total or 0)


def _draw(session: Session, sku: str, quantity: int, first: int, **change: int) -> int | None:
    """Apply `change` to a bucket with `quantity` available, `first` if it can, or to one the available units are
    gathered into; None when the product has fewer available.

    A bucket another transaction holds is passed over (SKIP LOCKED), so a draw waits for no row while it holds
    one; only when every bucket with the units is held does it wait, for one of them. What waits while holding
    rows is the gathering, which locks in bucket order: two draws never wait on each other in a cycle, bar one
    whose wait ended with the bucket emptied, then gathering (a deadlock, retried as ConcurrentUpdate)."""
    has_units = [StockBucket.sku == sku, StockBucket.on_hand - StockBucket.reserved >= quantity]
    free = session.scalar(
        select(StockBucket.bucket)
        .where(*has_units)
        .order_by(StockBucket.bucket < first, StockBucket.bucket)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if free is not None and _change(session, sku, free, needs_available=quantity, **change):
        return int(free)
    held = list(session.scalars(select(StockBucket.bucket).where(*has_units)))
    if held:
        bucket = _pick.choice(held)
        if _change(session, sku, bucket, needs_available=quantity, **change):
            return int(bucket)
    target = _gather(session, sku, quantity)
    if target is not None:
        _change(session, sku, target, **change)
    return target


def _gather(session: Session, sku: str, quantity: int) -> int | None:
    """Lock the product's buckets (in order, so two gatherers cannot deadlock) and move available units into the
    one with the most until it has `quantity`; None when all of them together have fewer."""
    rows = list(
        session.execute(
            select(StockBucket.bucket, StockBucket.on_hand - StockBucket.reserved)
            .where(StockBucket.sku == sku)
            .order_by(StockBucket.bucket)
            .with_for_update()
        )
    )
    if sum(free for _, free in rows) < quantity:
        return None
    target, free_there = max(rows, key=lambda row: row[1])
    wanted = quantity - free_there
    for bucket, free in rows:
        if wanted <= 0:
            break
        moved = min(free, wanted)
        if bucket != target and moved > 0:
            _change(session, sku, bucket, on_hand=-moved)
            _change(session, sku, target, on_hand=moved)
            wanted -= moved
    return int(target)


def _change(
    session: Session, sku: str, bucket: int, on_hand: int = 0, reserved: int = 0, needs_available: int = 0
) -> bool:
    """One bucket's UPDATE; with `needs_available`, only while that many units are available in it."""
    where: list[Any] = [StockBucket.sku == sku, StockBucket.bucket == bucket]
    if needs_available:
        where.append(StockBucket.on_hand - StockBucket.reserved >= needs_available)
    changed = session.execute(
        update(StockBucket)
        .where(*where)
        .values(on_hand=StockBucket.on_hand + on_hand, reserved=StockBucket.reserved + reserved)
        .execution_options(synchronize_session=False)
    )
    return bool(changed.rowcount == 1)  # type: ignore[attr-defined]
