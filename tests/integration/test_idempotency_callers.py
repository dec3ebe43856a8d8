"""Idempotency keys belong to their caller (docs/design.md §3.4): the IAM principal API Gateway verified, lasting
beyond one session, through chalice.test.Client with the identity API Gateway puts in requestContext."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client
from sqlalchemy import func, select, update

from app import app
from chalicelib.adapters import database
from chalicelib.adapters.tables import Saga
from infra.engine.local_engine import LocalEngine
from tests.conftest import Backend
from tests.helpers import final_view

ACCOUNT = "123456789012"
SHOP_SESSION_1 = f"arn:aws:sts::{ACCOUNT}:assumed-role/shop/botocore-session-1764990000"
SHOP_SESSION_2 = f"arn:aws:sts::{ACCOUNT}:assumed-role/shop/ecs-task-7f3a"
AUDIT_SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/audit/botocore-session-1764990000"
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"


@pytest.fixture
def client(backend: Backend, engine: LocalEngine) -> Iterator[Client]:
    with Client(app) as test_client:
        yield test_client


def _purchase(quantity: int = 2) -> dict[str, Any]:
    return {"customer_id": "c-keys", "sku": "SKU-MOUSE", "quantity": quantity, "payment_token": "tok_visa"}


def _post_as(
    client: Client, monkeypatch: pytest.MonkeyPatch, user_arn: str, key: str, body: dict[str, Any]
) -> dict[str, Any]:
    """POST /purchases as API Gateway delivers it after checking the request's SigV4 signature by `user_arn`."""
    converter = client.http._local_gateway.event_converter
    create_event = type(converter).create_lambda_event

    def with_identity(*args: Any, **kwargs: Any) -> dict[str, Any]:
        event = create_event(converter, *args, **kwargs)
        event["requestContext"].setdefault("identity", {})["userArn"] = user_arn
        return event

    with monkeypatch.context() as patched:
        patched.setattr(converter, "create_lambda_event", with_identity)
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        response = client.http.post("/purchases", headers=headers, body=json.dumps(body))
    assert response.status_code == 202, response.body
    return dict(response.json_body)


def _sagas() -> list[Saga]:
    with database.UnitOfWork() as uow:
        return list(uow.session.scalars(select(Saga)))


def test_two_sessions_of_one_role_share_their_keys(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _post_as(client, monkeypatch, SHOP_SESSION_1, "order-1", _purchase())
    after_a_crash = _post_as(client, monkeypatch, SHOP_SESSION_2, "order-1", _purchase())

    assert after_a_crash["saga_id"] == first["saga_id"]
    assert final_view(client, first["saga_id"])["status"] == "COMPLETED"
    assert len(_sagas()) == 1


def test_two_roles_and_a_user_each_have_their_own_keys(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    shop = _post_as(client, monkeypatch, SHOP_SESSION_1, "order-2", _purchase())
    audit = _post_as(client, monkeypatch, AUDIT_SESSION, "order-2", _purchase(quantity=1))
    alice = _post_as(client, monkeypatch, ALICE, "order-2", _purchase(quantity=3))
    alice_again = _post_as(client, monkeypatch, ALICE, "order-2", _purchase(quantity=3))

    assert len({shop["saga_id"], audit["saga_id"], alice["saga_id"]}) == 3
    assert alice_again["saga_id"] == alice["saga_id"]
    assert [final_view(client, s["saga_id"])["input"]["quantity"] for s in (shop, audit, alice)] == [2, 1, 3]
    callers = {saga.caller for saga in _sagas()}
    assert len(callers) == 3
    assert not any("shop" in caller or "alice" in caller for caller in callers), "a digest, not the ARN"


def test_a_key_used_before_keys_had_callers_still_finds_its_saga(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _post_as(client, monkeypatch, SHOP_SESSION_1, "order-3", _purchase())
    final_view(client, old["saga_id"])
    with database.UnitOfWork() as uow:  # what migration 0007 left on rows written before it
        uow.session.execute(update(Saga).where(Saga.id == old["saga_id"]).values(caller=""))
        uow.commit()

    retried = _post_as(client, monkeypatch, SHOP_SESSION_2, "order-3", _purchase())

    assert retried["saga_id"] == old["saga_id"]
    with database.UnitOfWork() as uow:
        assert uow.session.scalar(select(func.count()).select_from(Saga)) == 1
