"""Helpers for the provider tests: raw HTTP to a running provider, fresh ids, and concurrent calls."""

from __future__ import annotations

import http.client
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from chalicelib.adapters.payment_provider import PaymentProviderClient, ProviderUnavailable
from payment_provider.launcher import RunningProvider

LOST_RESPONSE_HOLD_SECONDS = 2.0
SHORT_CLIENT_TIMEOUT = 0.5
FAST_SETTLE_SECONDS = 0.5


@dataclass(frozen=True)
class Reply:
    status: int
    headers: http.client.HTTPMessage
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw)


def send(
    provider: RunningProvider,
    method: str,
    path: str,
    body: bytes | dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    api_key: str | None = "default",
    idempotency_key: str | None = None,
) -> Reply:
    """One raw HTTP request to `provider`, authenticated with its key unless `api_key` says otherwise."""
    all_headers = dict(headers or {})
    if api_key is not None:
        all_headers["Authorization"] = f"Bearer {provider.api_key if api_key == 'default' else api_key}"
    if idempotency_key is not None:
        all_headers["Idempotency-Key"] = idempotency_key
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    connection = http.client.HTTPConnection("127.0.0.1", provider.port, timeout=10)
    try:
        connection.request(method, path, body=data, headers=all_headers)
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


def unique(prefix: str) -> str:
    """A fresh id, so tests sharing a provider never see each other's charges."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def charge_body(saga_id: str, token: str = "tok_visa", amount_cents: int = 1000) -> dict[str, Any]:
    return {"amount_cents": amount_cents, "currency": "usd", "payment_token": token, "saga_id": saga_id}


_Result = TypeVar("_Result")


def run_together(count: int, call: Callable[[], _Result]) -> list[_Result | BaseException]:
    """`call` on `count` threads released at once; each thread's result or exception."""
    barrier = threading.Barrier(count)
    results: list[_Result | BaseException] = [RuntimeError("did not run")] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = call()
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def assert_concurrent_duplicates_charge_once(client: PaymentProviderClient) -> None:
    """Eight concurrent requests with one key: one charge, and every answer that is not a 409 (in use: try again
    later) is that charge."""
    saga_id, key = unique("saga"), unique("key")
    results = run_together(8, lambda: client.charge(saga_id, "tok_visa", 999, "usd", idempotency_key=key))
    charged = client.charges_for_saga(saga_id)
    assert len(charged) == 1
    for result in results:
        if isinstance(result, ProviderUnavailable):  # 409 idempotency_key_in_use: the first was still at work
            assert "idempotency_key_in_use" in str(result)
        else:
            assert result == charged[0]
