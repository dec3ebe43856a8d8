"""What any client can send: wrong keys, bad JSON, wrong fields, routes, methods and garbage never get a 500."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from payment_provider.launcher import RunningProvider
from tests.provider.support import charge_body, send, unique


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer sk_wrong"}, {"Authorization": "sk_test_local"}, {"Authorization": "Basic x"}],
)
def test_a_request_without_a_valid_api_key_is_401(provider: RunningProvider, headers: dict[str, str]) -> None:
    for method, path in (("GET", "/v1/charges"), ("POST", "/v1/charges"), ("GET", "/v1/refunds/re_x")):
        reply = send(provider, method, path, charge_body("s") if method == "POST" else None, headers, api_key=None)
        assert reply.status == 401
        assert reply.body["error"] == "unauthorized"
        assert reply.headers["WWW-Authenticate"] == "Bearer"


def test_a_rejected_charge_stores_nothing(provider: RunningProvider) -> None:
    saga_id = unique("saga")
    send(provider, "POST", "/v1/charges", charge_body(saga_id), api_key="sk_wrong", idempotency_key=unique("k"))
    assert send(provider, "GET", f"/v1/charges?saga_id={saga_id}").body["items"] == []


def test_bad_json_is_400(provider: RunningProvider) -> None:
    reply = send(provider, "POST", "/v1/charges", b'{"amount_cents": 1', idempotency_key=unique("k"))
    assert (reply.status, reply.body["error"]) == (400, "invalid_json")


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"amount_cents": None}, "amount_cents", "invalid_field"),
        ({"amount_cents": "1000"}, "amount_cents", "invalid_field"),
        ({"amount_cents": 10.5}, "amount_cents", "invalid_field"),
        ({"amount_cents": 1000.0}, "amount_cents", "invalid_field"),
        ({"amount_cents": True}, "amount_cents", "invalid_field"),
        ({"amount_cents": 0}, "amount_cents", "invalid_field"),
        ({"amount_cents": -5}, "amount_cents", "invalid_field"),
        ({"amount_cents": 10**30}, "amount_cents", "invalid_field"),
        ({"currency": "us"}, "currency", "invalid_field"),
        ({"currency": 840}, "currency", "invalid_field"),
        ({"payment_token": 4242}, "payment_token", "invalid_field"),
        ({"payment_token": ""}, "payment_token", "invalid_field"),
        ({"saga_id": ""}, "saga_id", "invalid_field"),
        ({"saga_id": "a\u0000b"}, "saga_id", "invalid_field"),
        ({"saga_id": "\ud800"}, "saga_id", "invalid_field"),
        ({"saga_id": ["s"]}, "saga_id", "invalid_field"),
        ({"colour": "red"}, "colour", "unknown_field"),
    ],
)
def test_a_wrong_charge_field_is_400_naming_it(
    provider: RunningProvider, change: dict[str, Any], field: str, code: str
) -> None:
    body = {**charge_body(unique("saga"), "tok_visa_secretish"), **change}
    reply = send(provider, "POST", "/v1/charges", body, idempotency_key=unique("k"))
    assert reply.status == 400
    assert (reply.body["error"], reply.body["param"]) == (code, field)
    assert reply.body["message"].startswith(f"{field}: ")
    assert b"secretish" not in reply.raw


@pytest.mark.parametrize("missing", ["amount_cents", "currency", "payment_token", "saga_id"])
def test_a_missing_charge_field_is_400_naming_it(provider: RunningProvider, missing: str) -> None:
    body = {name: value for name, value in charge_body(unique("saga")).items() if name != missing}
    reply = send(provider, "POST", "/v1/charges", body, idempotency_key=unique("k"))
    assert (reply.status, reply.body["error"], reply.body["param"]) == (400, "missing_field", missing)
    assert missing in reply.body["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [({"amount_cents": 1}, "charge_id"), ({"charge_id": "ch_x"}, "amount_cents"), ({"charge_id": 5}, "charge_id")],
)
def test_a_wrong_refund_field_is_400_naming_it(provider: RunningProvider, body: dict[str, Any], field: str) -> None:
    reply = send(provider, "POST", "/v1/refunds", body, idempotency_key=unique("k"))
    assert (reply.status, reply.body["param"]) == (400, field)


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/", 404, "route_not_found"),
        ("GET", "/v2/charges", 404, "route_not_found"),
        ("GET", "/v1/charges/", 404, "route_not_found"),
        ("GET", "/v1/charges/ch_x/extra", 404, "route_not_found"),
        ("GET", "/v1/charges/%00", 404, "route_not_found"),
        ("GET", "/v1/charges/ch_unknown", 404, "charge_not_found"),
        ("DELETE", "/v1/charges", 405, "method_not_allowed"),
        ("PUT", "/v1/charges/ch_x", 405, "method_not_allowed"),
        ("GET", "/v1/refunds/re_x/cancel", 405, "method_not_allowed"),
        ("BREW", "/v1/charges", 405, "method_not_allowed"),
    ],
)
def test_unknown_routes_are_404_and_wrong_methods_405(
    provider: RunningProvider, method: str, path: str, status: int, code: str
) -> None:
    reply = send(provider, method, path)
    assert (reply.status, reply.body["error"]) == (status, code)


def test_a_405_says_which_methods_are_allowed(provider: RunningProvider) -> None:
    assert send(provider, "DELETE", "/v1/charges").headers["Allow"] == "POST, GET"


GARBAGE_BODIES: list[bytes] = [
    b"",
    b"null",
    b"[]",
    b"123",
    b'"tok_visa"',
    b"{",
    b"\xff\xfe\x00",
    b"NaN",
    b'{"amount_cents": NaN, "currency": "usd", "payment_token": "tok_visa", "saga_id": "s"}',
    b'{"amount_cents": Infinity}',
    b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
    b'{"amount_cents": {"$gt": 0}, "currency": [], "payment_token": {}, "saga_id": null}',
    b'{"charge_id": "../../etc/passwd", "amount_cents": 1}',
    b'{"charge_id": "ch_\\u0000", "amount_cents": 1}',
    '{"saga_id": "\u00e9\u00e8\u4e2d", "amount_cents": 1}'.encode(),
]


@pytest.mark.parametrize("path", ["/v1/charges", "/v1/refunds", "/v1/refunds/re_x/cancel"])
def test_garbage_bodies_get_json_4xx_answers_never_500(provider: RunningProvider, path: str) -> None:
    for body in GARBAGE_BODIES:
        reply = send(provider, "POST", path, body, idempotency_key=unique("k"))
        assert 400 <= reply.status < 500, (body[:40], reply.status, reply.raw[:200])
        assert set(reply.body) >= {"error", "message"}


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=-1",
        "limit=1001",
        "limit=abc",
        "limit=1.5",
        "starting_after=%00",
        "saga_id=%00",
        "charge_id=../x",
    ],
)
def test_bad_list_parameters_are_400(provider: RunningProvider, query: str) -> None:
    path = "/v1/refunds" if query.startswith("charge_id") else "/v1/charges"
    reply = send(provider, "GET", f"{path}?{query}")
    assert (reply.status, reply.body["param"]) == (400, query.split("=")[0])


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Length": "abc"},
        {"Content-Length": "-1"},
        {"Content-Length": str(10**9)},
        {"Transfer-Encoding": "chunked"},
    ],
)
def test_bad_framing_headers_get_json_4xx(provider: RunningProvider, headers: dict[str, str]) -> None:
    request = (
        f"POST /v1/charges HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {provider.api_key}\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        + "Idempotency-Key: k\r\n\r\n"
    )
    status, body = raw_exchange(provider, request.encode())
    assert 400 <= status < 500
    assert b'"error"' in body


def test_an_oversized_body_is_413(provider: RunningProvider) -> None:
    reply = send(provider, "POST", "/v1/charges", b"x" * (100 * 1024), idempotency_key=unique("k"))
    assert (reply.status, reply.body["error"]) == (413, "body_too_large")


@pytest.mark.parametrize(
    "request_line",
    [b"GARBAGE\r\n\r\n", b"GET /v1/charges HTTP/9.9\r\n\r\n", b"GET /x HTTP/1.1 extra\r\n\r\n", b"\x00\x01\r\n\r\n"],
)
def test_a_malformed_request_line_gets_a_json_error(provider: RunningProvider, request_line: bytes) -> None:
    with socket.create_connection(("127.0.0.1", provider.port), timeout=5) as connection:
        connection.sendall(request_line)
        answer = b"".join(iter(lambda: connection.recv(65536), b""))
    # http.server answers a line it cannot read HTTP/0.9-style: the body alone, no status line or headers.
    body = answer.partition(b"\r\n\r\n")[2] if answer.startswith(b"HTTP/") else answer
    assert json.loads(body)["error"] == "bad_request"
    assert not answer.startswith(b"HTTP/1.0 500")


def raw_exchange(provider: RunningProvider, data: bytes) -> tuple[int, bytes]:
    """Send bytes as they are and read the whole answer; its status and body."""
    with socket.create_connection(("127.0.0.1", provider.port), timeout=5) as connection:
        connection.sendall(data)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def test_the_provider_log_holds_no_tokens_or_bodies(provider: RunningProvider) -> None:
    send(provider, "POST", "/v1/charges", charge_body(unique("s"), "tok_hunter2"), idempotency_key=unique("k"))
    send(provider, "POST", "/v1/charges", {**charge_body(unique("s"), "tok_hunter3"), "amount_cents": -1})
    send(provider, "POST", "/v1/charges", b'{"payment_token": "tok_hunter4", broken', idempotency_key=unique("k"))
    output = provider.output()
    assert "POST /v1/charges 402" in output
    assert "hunter" not in output


def test_health_answers_without_a_key(provider: RunningProvider) -> None:
    reply = send(provider, "GET", "/health", api_key=None)
    assert (reply.status, reply.body) == (200, {"status": "ok"})


def test_an_empty_saga_id_is_refused_rather_than_listing_every_charge(provider: RunningProvider) -> None:
    reply = send(provider, "GET", "/v1/charges?saga_id=")
    assert (reply.status, reply.body["param"]) == (400, "saga_id")


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/nowhere"), ("PUT", "/v1/charges"), ("POST", "/v1/charges")])
def test_a_refused_request_with_a_large_body_still_gets_its_answer(
    provider: RunningProvider, method: str, path: str
) -> None:
    body = b'{"payment_token": "' + b"x" * 60_000 + b'"}'
    for api_key in ("default", "sk_wrong"):
        reply = send(provider, method, path, body, api_key=api_key)
        assert 400 <= reply.status < 500
        assert reply.body["error"]
