"""The provider's HTTP face (stdlib `http.server`): routes, API-key auth, JSON in and out, chaos.

Whatever a client sends gets a JSON answer; request bodies are never logged, since they carry payment tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from payment_provider.answers import Answer, error_answer, unavailable
from payment_provider.api import ProviderApi
from payment_provider.chaos import Chaos
from payment_provider.commands import OBJECT_ID_PATTERN

MAX_BODY_BYTES = 64 * 1024
_DRAINED_AT_MOST = 1024 * 1024
"""An oversized body up to this size is read and dropped, so its client gets the 413 rather than a reset."""
logger = logging.getLogger("payment_provider")


@dataclass(frozen=True)
class Call:
    account: str
    object_id: str
    query: dict[str, str]
    payload: Any
    idempotency_key: str | None


@dataclass(frozen=True)
class Route:
    method: str
    path: re.Pattern[str]
    action: Callable[[ProviderApi, Call], Answer]
    takes_json: bool = False


def _path(template: str) -> re.Pattern[str]:
    return re.compile(template.replace("{id}", f"(?P<id>{OBJECT_ID_PATTERN})"))


ROUTES = (
    Route(
        "POST", _path("/v1/charges"), lambda api, c: api.create_charge(c.account, c.idempotency_key, c.payload), True
    ),
    Route("GET", _path("/v1/charges"), lambda api, c: api.list_charges(c.query)),
    Route("GET", _path("/v1/charges/{id}"), lambda api, c: api.get_charge(c.object_id)),
    Route(
        "POST", _path("/v1/refunds"), lambda api, c: api.create_refund(c.account, c.idempotency_key, c.payload), True
    ),
    Route("GET", _path("/v1/refunds"), lambda api, c: api.list_refunds(c.query)),
    Route("GET", _path("/v1/refunds/{id}"), lambda api, c: api.get_refund(c.object_id)),
    Route("POST", _path("/v1/refunds/{id}/cancel"), lambda api, c: api.cancel_refund(c.object_id)),
)


class ProviderHTTPServer(ThreadingHTTPServer):
    """One thread per connection; `stop()` also releases connections held for lost answers."""

    request_queue_size = 128
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], api: ProviderApi, api_key: str, chaos: Chaos, lost_response_hold_seconds: float
    ) -> None:
        self.api = api
        self.api_key = api_key.encode()
        self.account = hashlib.sha256(self.api_key).hexdigest()[:32]
        self.chaos = chaos
        self.lost_response_hold_seconds = lost_response_hold_seconds
        self.stopping = threading.Event()
        super().__init__(address, ProviderRequestHandler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the host, which can stall start-up for seconds."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One log line (a client that hung up, mostly), not a traceback on stderr."""
        error = sys.exc_info()[1]
        logger.warning("connection from %s ended: %s: %s", client_address[0], type(error).__name__, error)

    def stop(self) -> None:
        """Stop serving (call from another thread than `serve_forever`'s)."""
        self.stopping.set()
        self.shutdown()


class ProviderRequestHandler(BaseHTTPRequestHandler):
    server_version = "payment-provider/1"
    sys_version = ""
    timeout = 15
    """Seconds a client may take to send its request, so a stalled one cannot hold a thread forever."""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol-level errors (bad request line, unknown method) as JSON like every other answer."""
        status = HTTPStatus.METHOD_NOT_ALLOWED if code == HTTPStatus.NOT_IMPLEMENTED else HTTPStatus(code)
        self.close_connection = True
        code_name = "method_not_allowed" if status == HTTPStatus.METHOD_NOT_ALLOWED else "bad_request"
        logger.info("request refused before routing: %d %s", status, message or status.phrase)
        self._write(error_answer(status, code_name, message or status.phrase))

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Requests are logged once they are answered, by `_handle`, with their duration."""

    def log_message(self, format: str, *args: Any) -> None:
        logger.warning("%s: %s", self.address_string(), format % args)

    def _handle(self) -> None:
        started = time.monotonic()
        answer = self._answer()
        if answer is None:
            self.close_connection = True
            return
        self._write(answer)
        elapsed_ms = (time.monotonic() - started) * 1000
        logger.info("%s %s %d %.1fms", self.command, urlsplit(self.path).path, answer.status, elapsed_ms)

    def _answer(self) -> Answer | None:
        server = cast(ProviderHTTPServer, self.server)
        target = urlsplit(self.path)
        # Read the body before any answer: closing a socket with unread input resets it, and the client
        # would see a reset instead of the answer.
        body = self._read_body()
        if isinstance(body, Answer):
            return body
        if target.path == "/health" and self.command == "GET":
            return Answer(200, {"status": "ok"})
        found = self._route(target.path)
        if isinstance(found, Answer):
            return found
        route, object_id = found
        if not self._authenticated(server.api_key):
            answer = error_answer(401, "unauthorized", "a valid API key is required: Authorization: Bearer <key>")
            return replace(answer, headers={"WWW-Authenticate": "Bearer"})
        server.chaos.delay()
        if self.command == "POST" and server.chaos.fails_before_acting():
            return unavailable("the provider is temporarily unavailable; retry with the same Idempotency-Key")
        try:
            fields = parse_qs(target.query, keep_blank_values=True, max_num_fields=50)
            query = {name: values[0] for name, values in fields.items()}
        except ValueError:
            return error_answer(400, "invalid_request", "the query string has too many parameters")
        payload = _json(body) if route.takes_json else None
        if isinstance(payload, Answer):
            return payload
        answer = self._perform(route, Call(server.account, object_id, query, payload, self.headers["Idempotency-Key"]))
        if self.command == "POST" and (answer.response_lost or server.chaos.loses_answer()):
            logger.info("%s %s %d withheld (lost response)", self.command, target.path, answer.status)
            server.stopping.wait(server.lost_response_hold_seconds)
            return None
        return answer

    def _route(self, path: str) -> tuple[Route, str] | Answer:
        allowed = []
        for route in ROUTES:
            match = route.path.fullmatch(path)
            if match and route.method == self.command:
                return route, match.groupdict().get("id") or ""
            if match:
                allowed.append(route.method)
        if allowed:
            methods = ", ".join(allowed)
            answer = error_answer(405, "method_not_allowed", f"{self.command} is not allowed here (allowed: {methods})")
            return replace(answer, headers={"Allow": methods})
        return error_answer(404, "route_not_found", "no such route")

    def _authenticated(self, api_key: bytes) -> bool:
        scheme, _, key = (self.headers["Authorization"] or "").strip().partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(key.strip().encode("utf-8", "replace"), api_key)

    def _read_body(self) -> bytes | Answer:
        if "chunked" in (self.headers["Transfer-Encoding"] or "").lower():
            self.close_connection = True
            return error_answer(411, "length_required", "send the body with a Content-Length, not chunked")
        try:
            length = int(self.headers["Content-Length"] or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            return error_answer(400, "invalid_request", "Content-Length must be a non-negative integer")
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            if length <= _DRAINED_AT_MOST:
                self.rfile.read(length)
            return error_answer(413, "body_too_large", f"the body must be at most {MAX_BODY_BYTES} bytes")
        body = self.rfile.read(length)
        if len(body) < length:
            return error_answer(400, "invalid_request", "the body is shorter than its Content-Length")
        return body

    def _perform(self, route: Route, call: Call) -> Answer:
        server = cast(ProviderHTTPServer, self.server)
        try:
            return route.action(server.api, call)
        except (OperationalError, InterfaceError, PoolTimeout) as error:
            logger.error("ledger database unavailable: %s", type(error).__name__)
            return unavailable("the provider's ledger is unavailable; retry with the same Idempotency-Key")
        except Exception:
            logger.exception("%s %s failed", self.command, urlsplit(self.path).path)
            return error_answer(500, "internal_error", "the provider failed to handle this request", storable=False)

    def _write(self, answer: Answer) -> None:
        data = json.dumps(answer.body).encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def _json(body: bytes) -> Any:
    def refuse_constant(name: str) -> None:
        raise ValueError(name)

    try:
        return json.loads(body, parse_constant=refuse_constant)
    except (ValueError, RecursionError):
        return error_answer(400, "invalid_json", "the body is not valid JSON")
