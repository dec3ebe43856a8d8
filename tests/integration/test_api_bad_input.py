"""Bad input over the HTTP API (issue 3, point 4): a clear JSON error naming every bad field, never a 500, no saga.

Each case runs through `chalice.test.Client`, with the local engine behind the API: the table of refused requests on
PostgreSQL alone (refused before any transaction opens, they never reach the database), the cases whose values
reach the database (a cursor's time, text stored verbatim) on every backend.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from chalice.test import Client
from sqlalchemy import func, inspect, select

from app import app
from chalicelib.adapters import database
from chalicelib.adapters.tables import Base, ReturnRequestRecord, Saga
from chalicelib.entrypoints.http_api import MAX_BODY_BYTES
from chalicelib.settings import get_settings
from infra.engine.local_engine import LocalEngine
from tests.conftest import Backend
from tests.helpers import final_view

JSON = {"Content-Type": "application/json"}
PURCHASE: dict[str, Any] = {"customer_id": "c-1", "sku": "SKU-MOUSE", "quantity": 2, "payment_token": "tok_visa"}
RETURN: dict[str, Any] = {"customer_id": "c-1", "order_id": "o-1", "quantity": 1, "reason": "does not fit"}
SAGAS = (("purchases", PURCHASE, "issue_refund"), ("returns", RETURN, "reserve_stock"))
"""Per POST route: a valid body, and a step of the other saga."""


@dataclass(frozen=True)
class Bad:
    """One bad request and the error it must get."""

    id: str
    method: str
    path: str
    status: int
    error: str
    fields: tuple[str, ...] = ()
    """Exactly the fields `details` names (every bad one, and nothing else)."""
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    allow_faults: bool = True


def _json(body: Any) -> bytes:
    return json.dumps(body).encode()


def _post(path: str, body: Any, status: int, error: str, *fields: str, case_id: str, **extra: Any) -> Bad:
    raw = body if isinstance(body, bytes) else _json(body)
    return Bad(case_id, "POST", f"/{path}", status, error, fields, raw, **extra)


def _get(case_id: str, path: str, status: int, error: str, *fields: str, **extra: Any) -> Bad:
    return Bad(case_id, "GET", path, status, error, fields, None, {}, **extra)


def _padded(body: dict[str, Any], size: int) -> bytes:
    """`body` with an extra `padding` field, serialised to exactly `size` bytes."""
    raw = _json(body | {"padding": ""})
    return _json(body | {"padding": "x" * (size - len(raw))})


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _body_cases() -> Iterator[Bad]:
    for path, valid, foreign_step in SAGAS:
        required = tuple(valid)
        yield _post(path, b'{"quantity": 2,', 400, "InvalidJSON", "body", case_id=f"{path}-malformed-json")
        yield _post(path, b"", 400, "InvalidJSON", "body", case_id=f"{path}-empty-body")
        yield _post(path, b"\xff\xfe{}", 400, "InvalidJSON", "body", case_id=f"{path}-not-utf8")
        yield _post(path, [valid], 400, "ValidationError", "body", case_id=f"{path}-body-is-a-list")
        yield _post(path, "an order", 400, "ValidationError", "body", case_id=f"{path}-body-is-a-string")
        yield _post(path, 42, 400, "ValidationError", "body", case_id=f"{path}-body-is-a-number")
        yield _post(path, None, 400, "ValidationError", "body", case_id=f"{path}-body-is-null")
        yield _post(
            path,
            b"[" * 100_000 + b"]" * 100_000,
            400,
            "InvalidJSON",
            "body",
            case_id=f"{path}-deeply-nested-list",
        )
        for name, value in (("string", "2"), ("float", 2.5), ("bool", True), ("null", None), ("list", [2])):
            yield _post(
                path, valid | {"quantity": value}, 400, "ValidationError", "quantity", case_id=f"{path}-quantity-{name}"
            )
        for name, value in (("zero", 0), ("negative", -1), ("1001", 1001), ("10-to-the-12", 10**12)):
            yield _post(
                path, valid | {"quantity": value}, 400, "ValidationError", "quantity", case_id=f"{path}-quantity-{name}"
            )
        yield _post(
            path,
            b'{"quantity": 1' + b"0" * 5000 + b"}",
            400,
            "InvalidJSON",
            "body",
            case_id=f"{path}-quantity-5001-digits",
        )
        yield _post(
            path, {}, 400, "ValidationError", *required, case_id=f"{path}-empty-object-names-every-required-field"
        )
        yield _post(
            path,
            {key: value for key, value in valid.items() if key != "quantity"},
            400,
            "ValidationError",
            "quantity",
            case_id=f"{path}-missing-quantity",
        )
        yield _post(path, valid | {"discount": 50}, 400, "ValidationError", "discount", case_id=f"{path}-unknown-field")
        yield _post(
            path,
            valid | {"discount": 50, "quantity": 0, "saga_id": "x"},
            400,
            "ValidationError",
            "discount",
            "quantity",
            "saga_id",
            case_id=f"{path}-three-bad-fields-all-named",
        )
        yield _post(
            path,
            valid | {"faults": {"bogus": "fail"}},
            400,
            "ValidationError",
            "faults",
            case_id=f"{path}-fault-unknown-step",
        )
        yield _post(
            path,
            valid | {"faults": {foreign_step: "fail"}},
            400,
            "ValidationError",
            "faults",
            case_id=f"{path}-fault-step-of-the-other-saga",
        )
        first_step = "reserve_stock" if path == "purchases" else "validate_return"
        for name, spec in (("explode", "explode"), ("transient-0", "transient:0"), ("transient-10", "transient:10")):
            yield _post(
                path,
                valid | {"faults": {first_step: spec}},
                400,
                "ValidationError",
                f"faults.{first_step}",
                case_id=f"{path}-fault-spec-{name}",
            )
        yield _post(
            path, valid | {"faults": "fail"}, 400, "ValidationError", "faults", case_id=f"{path}-faults-not-an-object"
        )
        yield _post(
            path,
            valid | {"faults": {first_step: "fail"}},
            400,
            "ValidationError",
            "faults",
            case_id=f"{path}-faults-when-not-allowed",
            allow_faults=False,
        )
        for media_type in ("text/plain", "application/x-www-form-urlencoded"):
            yield _post(
                path,
                valid,
                415,
                "UnsupportedMediaType",
                "Content-Type",
                case_id=f"{path}-content-type-{media_type.split('/')[1]}",
                headers={"Content-Type": media_type},
            )
        yield _post(
            path,
            _padded(valid, MAX_BODY_BYTES),
            400,
            "ValidationError",
            "padding",
            case_id=f"{path}-body-at-256kb-is-parsed",
        )
        yield _post(
            path, _padded(valid, MAX_BODY_BYTES + 1), 413, "PayloadTooLarge", "body", case_id=f"{path}-body-over-256kb"
        )
        for name, key in (("too-long", "k" * 201), ("non-ascii", "clé-1"), ("control-char", "a\tb"), ("empty", "")):
            yield _post(
                path,
                valid,
                400,
                "ValidationError",
                "Idempotency-Key",
                case_id=f"{path}-idempotency-key-{name}",
                headers=JSON | {"Idempotency-Key": key},
            )
        yield _post(
            path,
            valid | {"quantity": 0},
            400,
            "ValidationError",
            "quantity",
            "Idempotency-Key",
            case_id=f"{path}-bad-body-and-bad-idempotency-key-both-named",
            headers=JSON | {"Idempotency-Key": "k" * 201},
        )


def _field_cases() -> Iterator[Bad]:
    for name in ("customer_id", "sku", "payment_token"):
        for label, value in (("65-chars", "c" * 65), ("empty", ""), ("int", 5), ("space", "c 1")):
            yield _post(
                "purchases", PURCHASE | {name: value}, 400, "ValidationError", name, case_id=f"purchases-{name}-{label}"
            )
    yield _post(
        "purchases",
        PURCHASE | {"customer_id": "x'; DROP TABLE sagas;--"},
        400,
        "ValidationError",
        "customer_id",
        case_id="purchases-customer_id-sql-rejected-by-pattern",
    )
    yield _post(
        "purchases",
        PURCHASE | {"customer_id": 5, "sku": "s" * 65, "quantity": "2"},
        400,
        "ValidationError",
        "customer_id",
        "sku",
        "quantity",
        case_id="purchases-wrong-type-too-long-and-string-quantity-all-named",
    )
    for label, value in (("65-chars", "o" * 65), ("empty", ""), ("int", 5)):
        yield _post(
            "returns",
            RETURN | {"order_id": value},
            400,
            "ValidationError",
            "order_id",
            case_id=f"returns-order_id-{label}",
        )
    for label, value in (("501-chars", "r" * 501), ("empty", ""), ("int", 5), ("lone-surrogate", "a\ud800b")):
        yield _post(
            "returns", RETURN | {"reason": value}, 400, "ValidationError", "reason", case_id=f"returns-reason-{label}"
        )
    yield _post(
        "returns",
        RETURN | {"reason": "bad\x00byte"},
        400,
        "ValidationError",
        "reason",
        case_id="returns-reason-with-nul",
    )


def _read_cases() -> Iterator[Bad]:
    unknown = "0" * 32
    yield _get("saga-unknown-id", f"/sagas/{unknown}", 404, "NotFound")
    yield _get("saga-history-unknown-id", f"/sagas/{unknown}/history", 404, "NotFound")
    yield _get("saga-unknown-id-sql", "/sagas/x' OR '1'='1", 404, "NotFound")
    yield _get("saga-unknown-id-5000-chars", "/sagas/" + "a" * 5000, 404, "NotFound")
    yield _get("product-unknown-sku", "/products/SKU-NONE", 404, "NotFound")
    yield _get("saga-id-with-nul", "/sagas/a\x00b", 404, "NotFound")
    yield _get("saga-history-id-with-nul", "/sagas/a\x00b/history", 404, "NotFound")
    yield _get("product-sku-with-nul", "/products/SKU\x00", 404, "NotFound")
    for name, query, fields in (
        ("limit-0", "limit=0", ("limit",)),
        ("limit-101", "limit=101", ("limit",)),
        ("limit-abc", "limit=abc", ("limit",)),
        ("limit-empty", "limit=", ("limit",)),
        ("type-bogus", "type=bogus", ("type",)),
        ("status-bogus", "status=bogus", ("status",)),
        ("status-lowercase", "status=completed", ("status",)),
        ("unknown-parameter", "sort=id", ("sort",)),
        ("three-bad-parameters-all-named", "limit=0&type=bogus&sort=id", ("limit", "type", "sort")),
        ("cursor-garbage", "cursor=garbage!", ("cursor",)),
        ("cursor-empty", "cursor=", ("cursor",)),
        ("cursor-513-chars", "cursor=" + "a" * 513, ("cursor",)),
        ("cursor-not-a-pair", f"cursor={_cursor({'a': 1})}", ("cursor",)),
        ("cursor-naive-time", f"cursor={_cursor(['2026-01-01T00:00:00', 'x'])}", ("cursor",)),
        ("cursor-id-not-a-string", f"cursor={_cursor(['2026-01-01T00:00:00+00:00', 5])}", ("cursor",)),
    ):
        yield _get(f"list-{name}", f"/sagas?{query}", 400, "ValidationError", *fields)


CASES = [*_body_cases(), *_field_cases(), *_read_cases()]


@pytest.fixture
def client(backend: Backend, engine: LocalEngine) -> Iterator[Client]:
    with Client(app) as test_client:
        yield test_client


def _saga_count() -> int:
    with database.UnitOfWork() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(Saga)) or 0)


def _let_started_sagas_finish(engine: LocalEngine) -> None:
    """A case wrongly accepted started a saga: let it end before the next test empties the database."""
    with database.UnitOfWork() as uow:
        arns = [arn for arn in uow.session.scalars(select(Saga.execution_arn)) if arn]
    for arn in arns:
        engine.wait(arn, timeout_seconds=30)


def _assert_error_shape(body: Any) -> None:
    assert isinstance(body, dict) and set(body) == {"error", "message", "details"}, body
    assert isinstance(body["error"], str) and isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], list)
    for detail in body["details"]:
        assert isinstance(detail, dict) and set(detail) == {"field", "problem"}, detail
        assert isinstance(detail["field"], str) and isinstance(detail["problem"], str) and detail["problem"]


@pytest.mark.backends("postgres")  # refused before any transaction opens; the cursor and stored-text cases below
@pytest.mark.parametrize("case", [pytest.param(case, id=case.id) for case in CASES])  # run on every backend
def test_bad_input_gets_a_json_error_naming_every_bad_field_and_starts_no_saga(
    client: Client, backend: Backend, engine: LocalEngine, case: Bad
) -> None:
    get_settings().allow_faults = case.allow_faults  # the backend fixture restores it

    try:
        response = client.http.request(case.method, case.path, headers=case.headers, body=case.body)
        created = _saga_count()
    finally:
        _let_started_sagas_finish(engine)

    assert response.status_code == case.status, response.body[:500]
    body = response.json_body
    _assert_error_shape(body)
    assert body["error"] == case.error
    assert {detail["field"] for detail in body["details"]} == set(case.fields)
    assert created == 0


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-14:00"])
def test_a_cursor_outside_the_databases_time_range_is_refused_and_the_next_request_works(
    client: Client, backend: Backend, moment: str
) -> None:
    listed = client.http.get(f"/sagas?cursor={_cursor([moment, '0' * 32])}")
    product = client.http.get("/products/SKU-MOUSE")

    assert listed.status_code == 400
    assert listed.json_body["details"] == [{"field": "cursor", "problem": "cursor is not one this API returned"}]
    assert product.status_code == 200


def _start(client: Client, path: str, body: dict[str, Any]) -> str:
    response = client.http.post(path, headers=JSON, body=json.dumps(body))
    assert response.status_code == 202, response.body
    return str(response.json_body["saga_id"])


@pytest.mark.parametrize(
    "reason",
    [
        "<script>alert(1)</script> ' OR 1=1 --",
        "Robert'); DROP TABLE returns; DROP TABLE sagas;--",
        '{{7*7}} ${jndi:ldap://x/a} "; DELETE FROM products; -- naïve ☃ \u2028 \\x00',
    ],
    ids=["script-and-or-1-1", "drop-table", "template-jndi-unicode"],
)
def test_sql_and_script_lookalikes_in_a_reason_are_stored_and_returned_verbatim(client: Client, reason: str) -> None:
    bought = final_view(client, _start(client, "/purchases", PURCHASE))
    assert bought["status"] == "COMPLETED"

    saga_id = _start(
        client,
        "/returns",
        {"customer_id": "c-1", "order_id": bought["result"]["order_id"], "quantity": 1, "reason": reason},
    )
    view = final_view(client, saga_id)

    assert view["status"] == "COMPLETED"
    assert view["input"]["reason"] == reason
    with database.UnitOfWork() as uow:
        stored = uow.session.scalar(select(ReturnRequestRecord.reason).where(ReturnRequestRecord.saga_id == saga_id))
    assert stored == reason
    assert set(Base.metadata.tables) <= set(inspect(database.get_engine()).get_table_names())
    assert _saga_count() == 2
    assert client.http.get("/products/SKU-MOUSE").json_body["on_hand"] == 999
