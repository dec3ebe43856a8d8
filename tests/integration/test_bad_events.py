"""Step handlers given malformed, truncated, oversized or wrongly typed events: a named error, nothing written."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from chalicelib.adapters import database
from chalicelib.adapters.tables import (
    AuditEvent,
    Order,
    Payment,
    Product,
    Refund,
    Reservation,
    ReturnRequestRecord,
    Saga,
)
from chalicelib.domain.errors import InvalidStepEvent, UnknownSaga
from functions import (
    cancel_refund,
    confirm_sale,
    issue_refund,
    process_payment,
    refund_payment,
    release_stock,
    reserve_stock,
    update_stock,
    validate_return,
)
from tests.conftest import Backend
from tests.helpers import lambda_context

pytestmark = pytest.mark.backends("postgres")
"""A malformed event is refused before any transaction opens, whatever the database. So one backend:
PostgreSQL, the deployed default."""

HANDLERS = [
    reserve_stock,
    process_payment,
    confirm_sale,
    release_stock,
    refund_payment,
    validate_return,
    issue_refund,
    update_stock,
    cancel_refund,
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
near_misses = st.fixed_dictionaries(
    {"saga_id": st.one_of(st.text(max_size=40), st.integers(), st.none(), st.just("0" * 32), st.just("A" * 32))},
    optional={
        "retry_count": st.one_of(st.integers(), st.text(max_size=5), st.floats(allow_nan=False), st.booleans()),
        "retry_limit": st.one_of(st.integers(), st.text(max_size=5), st.none()),
        "extra": json_values,
    },
)


def _snapshot() -> dict[str, Any]:
    with database.UnitOfWork() as uow:
        counts = {
            model.__tablename__: uow.session.scalar(select(func.count()).select_from(model))
            for model in (Saga, AuditEvent, Reservation, Payment, Order, Refund, ReturnRequestRecord)
        }
        counts["stock"] = [(p.sku, p.on_hand, p.reserved) for p in uow.session.scalars(select(Product))]
    return counts


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(handler_index=st.integers(0, len(HANDLERS) - 1), event=st.one_of(json_values, near_misses))
def test_a_bad_event_gets_a_named_error_and_writes_nothing(backend: Backend, handler_index: int, event: Any) -> None:
    before = _snapshot()

    with pytest.raises((InvalidStepEvent, UnknownSaga)) as raised:
        HANDLERS[handler_index].lambda_handler(event, lambda_context())

    assert str(raised.value)
    assert _snapshot() == before


@pytest.mark.parametrize(
    "raw",
    [b"", b'{"saga_id": "0123', b"\\xff\\xfe", json.dumps({"saga_id": "a" * 1_000_000}).encode()],
    ids=["empty", "truncated", "not-utf8", "oversized"],
)
def test_truncated_or_oversized_payloads_are_refused_by_name(backend: Backend, raw: bytes) -> None:
    before = _snapshot()
    try:
        event: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        event = raw  # what a broken transport would hand over

    with pytest.raises((InvalidStepEvent, UnknownSaga)):
        reserve_stock.lambda_handler(event, lambda_context())

    assert _snapshot() == before
