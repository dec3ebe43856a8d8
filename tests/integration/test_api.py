"""The HTTP contract of docs/design.md §3, through chalice.test.Client, with sagas run on the local engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client
from sqlalchemy import func, select

from app import app
from chalicelib.adapters import database, step_functions
from chalicelib.adapters.tables import Saga
from infra.engine.local_engine import LocalEngine
from tests.conftest import Backend
from tests.helpers import final_view

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def client(backend: Backend, engine: LocalEngine) -> Iterator[Client]:
    with Client(app) as test_client:
        yield test_client


def _post(client: Client, path: str, body: dict[str, Any], key: str | None = None) -> Any:
    headers = JSON | ({"Idempotency-Key": key} if key else {})
    return client.http.post(path, headers=headers, body=json.dumps(body))


def _purchase(**overrides: Any) -> dict[str, Any]:
    return {"customer_id": "c-api", "sku": "SKU-MOUSE", "quantity": 2, "payment_token": "tok_visa"} | overrides


def _saga_count() -> int:
    with database.UnitOfWork() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(Saga)) or 0)


def test_purchase_is_accepted_and_runs_to_completion(client: Client) -> None:
    response = _post(client, "/purchases", _purchase())

    assert response.status_code == 202
    accepted = response.json_body
    assert accepted["type"] == "purchase" and accepted["status"] == "RUNNING"
    assert accepted["links"] == {"self": f"/sagas/{accepted['saga_id']}"}
    view = final_view(client, accepted["saga_id"])
    assert view["status"] == "COMPLETED"
    assert [(s["name"], s["action"], s["status"], s["attempts"]) for s in view["steps"]] == [
        ("reserve_stock", "execute", "SUCCEEDED", 1),
        ("process_payment", "execute", "SUCCEEDED", 1),
        ("confirm_sale", "execute", "SUCCEEDED", 1),
    ]
    assert set(view["result"]) == {"order_id"}
    request = _purchase(faults={})
    shown = {key: value for key, value in request.items() if key != "payment_token"}
    assert view["input"] == {**shown, "payment_method": "\u2026"}, "tok_visa is too short to show any of it"
    assert request["payment_token"] not in json.dumps(view)


def test_a_completed_purchase_can_be_returned_through_its_order_id(client: Client) -> None:
    bought = final_view(client, _post(client, "/purchases", _purchase(quantity=3)).json_body["saga_id"])

    response = _post(
        client,
        "/returns",
        {"customer_id": "c-api", "order_id": bought["result"]["order_id"], "quantity": 2, "reason": "late"},
    )

    assert response.status_code == 202
    returned = final_view(client, response.json_body["saga_id"])
    assert returned["status"] == "COMPLETED"
    assert [s["name"] for s in returned["steps"]] == ["validate_return", "issue_refund", "update_stock"]
    assert client.http.get("/products/SKU-MOUSE").json_body["on_hand"] == 999


def test_a_return_of_another_customers_order_is_rejected(client: Client) -> None:
    bought = final_view(client, _post(client, "/purchases", _purchase(quantity=2)).json_body["saga_id"])
    body = {"customer_id": "c-other", "order_id": bought["result"]["order_id"], "quantity": 1, "reason": "not mine"}

    response = _post(client, "/returns", body)

    assert response.status_code == 202
    refused = final_view(client, response.json_body["saga_id"])
    assert refused["status"] == "REJECTED"
    assert [(s["name"], s["status"]) for s in refused["steps"]] == [("validate_return", "FAILED")]
    assert refused["steps"][0]["error"]["type"] == "ReturnRejected"
    assert client.http.get("/products/SKU-MOUSE").json_body["on_hand"] == 998


@pytest.mark.parametrize(
    ("body", "status", "steps"),
    [
        (_purchase(payment_token="tok_declined"), "COMPENSATED", ["reserve_stock", "process_payment", "release_stock"]),
        (_purchase(quantity=1000, sku="SKU-MONITOR"), "REJECTED", ["reserve_stock"]),
        (_purchase(payment_token="tok_flaky"), "COMPLETED", ["reserve_stock", "process_payment", "confirm_sale"]),
        (
            _purchase(faults={"confirm_sale": "fail", "refund_payment": "fail"}),
            "FAILED",
            ["reserve_stock", "process_payment", "confirm_sale", "refund_payment"],
        ),
    ],
    ids=["declined", "out-of-stock", "flaky", "compensation-fails"],
)
def test_each_purchase_path_reaches_its_final_status(
    client: Client, body: dict[str, Any], status: str, steps: list[str]
) -> None:
    view = final_view(client, _post(client, "/purchases", body).json_body["saga_id"])

    assert view["status"] == status
    assert [step["name"] for step in view["steps"]] == steps


def test_failed_saga_shows_the_failed_compensation_and_its_attempts(client: Client) -> None:
    body = _purchase(faults={"confirm_sale": "fail", "refund_payment": "fail"})
    view = final_view(client, _post(client, "/purchases", body).json_body["saga_id"])

    refund = view["steps"][-1]
    assert (refund["action"], refund["status"], refund["attempts"]) == ("compensate", "FAILED", 6)
    assert refund["error"]["type"] == "InjectedFault"
    assert view["result"]["failed_compensation"] == "refund_payment"


def test_history_is_the_audit_log_oldest_first(client: Client) -> None:
    saga_id = _post(client, "/purchases", _purchase(payment_token="tok_flaky")).json_body["saga_id"]
    final_view(client, saga_id)

    events = client.http.get(f"/sagas/{saga_id}/history").json_body["events"]

    assert [(e["step"], e["status"], e["attempt"]) for e in events] == [
        ("saga", "RUNNING", 1),
        ("reserve_stock", "SUCCEEDED", 1),
        ("process_payment", "FAILED", 1),
        ("process_payment", "SUCCEEDED", 2),
        ("confirm_sale", "SUCCEEDED", 1),
        ("saga", "COMPLETED", 1),
    ]
    assert events[2]["error_type"] == "PaymentProviderUnavailable"
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)


def test_same_idempotency_key_and_body_return_the_same_saga_without_a_second_execution(client: Client) -> None:
    first = _post(client, "/purchases", _purchase(), key="order-42")
    again = _post(client, "/purchases", _purchase(), key="order-42")

    assert first.status_code == again.status_code == 202
    assert again.json_body["saga_id"] == first.json_body["saga_id"]
    assert _saga_count() == 1
    arns = step_functions.sfn_client().list_executions(stateMachineArn=step_functions.state_machine_arn("purchase"))
    assert [e["name"] for e in arns["executions"]].count(first.json_body["saga_id"]) == 1


def test_same_idempotency_key_with_another_body_is_a_conflict(client: Client) -> None:
    _post(client, "/purchases", _purchase(), key="order-43")

    response = _post(client, "/purchases", _purchase(quantity=3), key="order-43")

    assert response.status_code == 409
    assert response.json_body["error"] == "IdempotencyKeyReused"
    assert response.json_body["details"][0]["field"] == "Idempotency-Key"
    assert _saga_count() == 1


def test_idempotency_keys_that_differ_only_by_trailing_spaces_are_two_keys(client: Client) -> None:
    """Keys compare exactly on every engine (on MySQL/MariaDB through a NO PAD collation: utf8mb4_bin took them
    for one key, and answered the second purchase with the first's saga)."""
    first = _post(client, "/purchases", _purchase(), key="order-44")
    padded = _post(client, "/purchases", _purchase(quantity=1), key="order-44 ")
    again = _post(client, "/purchases", _purchase(quantity=1), key="order-44 ")

    assert first.status_code == padded.status_code == again.status_code == 202
    assert padded.json_body["saga_id"] != first.json_body["saga_id"]
    assert again.json_body["saga_id"] == padded.json_body["saga_id"]
    assert final_view(client, padded.json_body["saga_id"])["input"]["quantity"] == 1
    assert _saga_count() == 2


def test_listing_pages_through_every_saga_once_newest_first(client: Client) -> None:
    started = [_post(client, "/purchases", _purchase(quantity=1)).json_body["saga_id"] for _ in range(5)]
    for saga_id in started:
        final_view(client, saga_id)

    seen: list[str] = []
    cursor = None
    for _ in range(5):
        query = "/sagas?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.http.get(query).json_body
        assert len(page["items"]) <= 2
        seen += [item["saga_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == list(reversed(started))


def test_listing_filters_by_type_and_status(client: Client) -> None:
    done = final_view(client, _post(client, "/purchases", _purchase()).json_body["saga_id"])
    declined = final_view(
        client, _post(client, "/purchases", _purchase(payment_token="tok_declined")).json_body["saga_id"]
    )
    returned = _post(
        client,
        "/returns",
        {"customer_id": "c-api", "order_id": done["result"]["order_id"], "quantity": 1, "reason": "x"},
    )
    final_view(client, returned.json_body["saga_id"])

    purchases = client.http.get("/sagas?type=purchase").json_body["items"]
    compensated = client.http.get("/sagas?status=COMPENSATED").json_body["items"]
    returns = client.http.get("/sagas?type=return&status=COMPLETED").json_body["items"]

    assert {item["saga_id"] for item in purchases} == {done["saga_id"], declined["saga_id"]}
    assert [item["saga_id"] for item in compensated] == [declined["saga_id"]]
    assert [item["saga_id"] for item in returns] == [returned.json_body["saga_id"]]


def test_products_show_stock_and_availability(client: Client) -> None:
    final_view(client, _post(client, "/purchases", _purchase(quantity=4)).json_body["saga_id"])

    products = client.http.get("/products").json_body["items"]
    mouse = client.http.get("/products/SKU-MOUSE").json_body

    assert [p["sku"] for p in products] == sorted(p["sku"] for p in products)
    assert mouse == {
        "sku": "SKU-MOUSE",
        "name": "Wireless mouse",
        "price_cents": 2_500,
        "on_hand": 996,
        "reserved": 0,
        "available": 996,
    }
    assert mouse in products


def test_unknown_ids_are_404(client: Client) -> None:
    for path in ("/sagas/" + "0" * 32, "/sagas/" + "0" * 32 + "/history", "/products/SKU-NONE"):
        response = client.http.get(path)
        assert response.status_code == 404, path
        assert response.json_body["error"] == "NotFound"
