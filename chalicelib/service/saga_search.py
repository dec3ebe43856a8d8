"""Finding sagas for operators: the sagas a filter matches, a page at a time, and counts of them all.

`matching` turns a SagaFilter into the query's conditions; the listing pages through them, and an action on many
sagas takes the same conditions, so that it acts on what the listing showed. Each key is served by an index that
ends as the listing's order does (created_at, id), on PostgreSQL and MySQL alike (docs/design.md §4.1).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select

from chalicelib.adapters.database import UnitOfWork
from chalicelib.adapters.tables import Saga, utcnow
from chalicelib.domain.contracts import SagaStatus, SagaType
from chalicelib.domain.saga_filter import SagaFilter
from chalicelib.presentation import saga_views
from chalicelib.service.reconciler import candidates
from chalicelib.settings import get_settings

CURSOR_YEARS = (2000, 9000)
"""Years a cursor may name: well inside what every database and driver converts without overflow."""
SAGA_TYPES: tuple[SagaType, ...] = ("purchase", "return")

Cursor = tuple[datetime, str]
"""Where a page ends in the listing's order: (created_at, id) of its last saga."""


class BadCursor(ValueError):
    """A listing cursor that this service did not hand out."""


def matching(saga_filter: SagaFilter) -> list[ColumnElement[bool]]:
    """The conditions of the sagas `saga_filter` matches (all of them hold)."""
    conditions: list[ColumnElement[bool]] = []
    if saga_filter.status:
        conditions.append(Saga.status.in_(saga_filter.status))
    equal = {
        Saga.type: saga_filter.type,
        Saga.customer_id: saga_filter.customer_id,
        Saga.order_id: saga_filter.order_id,
        Saga.sku: saga_filter.sku,
        Saga.failed_step: saga_filter.step,
    }
    conditions += [column == value for column, value in equal.items() if value is not None]
    if saga_filter.created_after is not None:
        conditions.append(Saga.created_at >= saga_filter.created_after)
    if saga_filter.created_before is not None:
        conditions.append(Saga.created_at < saga_filter.created_before)
    return conditions


def search(saga_filter: SagaFilter, limit: int, cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """The sagas `saga_filter` matches, newest first, a page of `limit` after `cursor`; with the cursor of the next
    page, if there is one."""
    with UnitOfWork() as uow:
        page = list(uow.session.scalars(page_query(saga_filter, limit, cursor)))
    next_cursor = encode_cursor(page[limit - 1]) if len(page) > limit else None
    return [saga_views.summary(saga) for saga in page[:limit]], next_cursor


def page_query(saga_filter: SagaFilter, limit: int, cursor: str | None = None) -> Select[Saga]:
    """A page of what `saga_filter` matches after `cursor`, and one more saga (to tell whether a next page exists).

    The page's ids are found first, from the filter's index alone, and then their rows (a deferred join): asked for
    whole rows at once, MariaDB reads a status's index by the status only, and fetches the row of every newer saga to
    check the cursor against it, hundreds of thousands for a page far down."""
    newest_first = (Saga.created_at.desc(), Saga.id.desc())
    ids = select(Saga.id).where(*matching(saga_filter))
    if cursor:
        ids = ids.where(_after(decode_cursor(cursor)))
    page = ids.order_by(*newest_first).limit(limit + 1).subquery("page")
    return select(Saga).join(page, Saga.id == page.c.id).order_by(*newest_first)


def _after(cursor: Cursor) -> ColumnElement[bool]:
    """Past the cursor in the listing's order. `created_at <= c` first, which each index's range can serve (an OR
    alone, or a row comparison on MySQL, would be a filter over every newer row: a deep page would read them all)."""
    created_at, saga_id = cursor
    return and_(Saga.created_at <= created_at, or_(Saga.created_at < created_at, Saga.id < saga_id))


def encode_cursor(saga: Saga) -> str:
    raw = json.dumps([saga.created_at.isoformat(), saga.id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Cursor:
    try:
        created_at, saga_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        moment = datetime.fromisoformat(created_at)
    except (ValueError, TypeError, binascii.Error) as error:
        raise BadCursor("cursor is not one this API returned") from error
    if moment.tzinfo is None or not isinstance(saga_id, str) or not CURSOR_YEARS[0] <= moment.year <= CURSOR_YEARS[1]:
        raise BadCursor("cursor is not one this API returned")
    return moment, saga_id


def stats(since: datetime | None = None) -> dict[str, Any]:
    """Counts by status and by type of the sagas created at or after `since` (all, without it); over every saga, the
    stuck ones as the reconciler's next pass sees them, and the age of the oldest RUNNING saga."""
    now = utcnow()
    quiet_since = now - timedelta(seconds=get_settings().reconciler_grace_seconds)
    by_status: dict[str, int] = dict.fromkeys(SagaStatus, 0)
    by_type: dict[str, int] = dict.fromkeys(SAGA_TYPES, 0)
    with UnitOfWork() as uow:
        # One count per column, so that each is read from that column's index alone (created_at is in it too).
        for column, counts in ((Saga.status, by_status), (Saga.type, by_type)):
            counted = select(column, func.count()).group_by(column)
            if since is not None:
                counted = counted.where(Saga.created_at >= since)
            counts |= {value: count for value, count in uow.session.execute(counted)}
        stuck = uow.session.scalar(select(func.count()).select_from(Saga).where(candidates(quiet_since, now))) or 0
        oldest = uow.session.scalar(select(func.min(Saga.created_at)).where(Saga.status == SagaStatus.RUNNING))
    return {
        "since": since,
        "total": sum(by_status.values()),
        "by_status": by_status,
        "by_type": by_type,
        "stuck": stuck,
        "oldest_running_age_seconds": None if oldest is None else max(0.0, (now - oldest).total_seconds()),
    }
