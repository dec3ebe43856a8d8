"""The provider's operations as answers (status and JSON body): validation, idempotency, then the ledger."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from sqlalchemy import Connection, Engine

from payment_provider.answers import Answer, error_answer, unavailable
from payment_provider.chaos import Chaos
from payment_provider.commands import (
    ChargeRequest,
    RefundRequest,
    parse_body,
    parse_idempotency_key,
    parse_query,
)
from payment_provider.idempotency import IdempotencyKeys, IdempotencyScope
from payment_provider.ledger import (
    CardDeclined,
    Charge,
    ChargeNotFound,
    Ledger,
    LedgerError,
    Page,
    Refund,
    RefundAlreadySettled,
    RefundExceedsCharge,
    RefundNotFound,
    TemporarilyUnavailable,
    UnknownCursor,
)
from payment_provider.tokens import TokenBehaviour, behaviour_of

_ERRORS: dict[type[LedgerError], tuple[int, str, str | None]] = {
    CardDeclined: (402, "card_declined", None),
    ChargeNotFound: (404, "charge_not_found", None),
    RefundNotFound: (404, "refund_not_found", None),
    RefundExceedsCharge: (400, "refund_exceeds_charge", "amount_cents"),
    RefundAlreadySettled: (409, "refund_settled", None),
    UnknownCursor: (400, "invalid_field", "starting_after"),
}


class ProviderApi:
    """What each route does, for the account the caller authenticated as."""

    def __init__(
        self, engine: Engine, ledger: Ledger, keys: IdempotencyKeys, chaos: Chaos, slow_capture_seconds: float
    ) -> None:
        self._engine = engine
        self._ledger = ledger
        self._keys = keys
        self._chaos = chaos
        self._slow_capture_seconds = slow_capture_seconds

    def create_charge(self, account: str, idempotency_key: str | None, payload: Any) -> Answer:
        """POST /v1/charges: capture once per idempotency key."""
        key = parse_idempotency_key(idempotency_key)
        request = parse_body(ChargeRequest, payload)
        if isinstance(key, Answer):
            return key
        if isinstance(request, Answer):
            return request
        scope = IdempotencyScope(account, "charges", key)
        behaviour = behaviour_of(request.payment_token)
        loses_response = behaviour is TokenBehaviour.LOSES_RESPONSE
        slow = behaviour is TokenBehaviour.SLOW_CAPTURE or self._chaos.holds_capture()

        def capture(connection: Connection) -> Answer:
            try:
                charge = self._ledger.capture(connection, request, attempt_key=scope)
            except TemporarilyUnavailable as error:
                return unavailable(str(error))
            except LedgerError as error:
                return _error(error)
            return Answer(201, charge_body(charge), response_lost=loses_response)

        hold = self._slow_capture_seconds if slow else 0.0
        return self._keys.run_once(scope, request.fingerprint(), capture, hold_seconds=hold)

    def create_refund(self, account: str, idempotency_key: str | None, payload: Any) -> Answer:
        """POST /v1/refunds: refund once per idempotency key, never beyond the charge."""
        key = parse_idempotency_key(idempotency_key)
        request = parse_body(RefundRequest, payload)
        if isinstance(key, Answer):
            return key
        if isinstance(request, Answer):
            return request

        def refund(connection: Connection) -> Answer:
            return self._or_error(lambda: Answer(201, refund_body(self._ledger.refund(connection, request))))

        return self._keys.run_once(IdempotencyScope(account, "refunds", key), request.fingerprint(), refund)

    def cancel_refund(self, refund_id: str) -> Answer:
        """POST /v1/refunds/{id}/cancel: idempotent by nature, so no key is needed."""
        with self._engine.begin() as connection:
            return self._or_error(lambda: Answer(200, refund_body(self._ledger.cancel_refund(connection, refund_id))))

    def get_charge(self, charge_id: str) -> Answer:
        """GET /v1/charges/{id}."""
        with self._engine.connect() as connection:
            return self._or_error(lambda: Answer(200, charge_body(self._ledger.charge(connection, charge_id))))

    def get_refund(self, refund_id: str) -> Answer:
        """GET /v1/refunds/{id}."""
        with self._engine.connect() as connection:
            return self._or_error(lambda: Answer(200, refund_body(self._ledger.get_refund(connection, refund_id))))

    def list_charges(self, query: dict[str, str]) -> Answer:
        """GET /v1/charges: `saga_id` filters; `limit` and `starting_after` page through everything."""
        parsed = parse_query(query)
        if isinstance(parsed, Answer):
            return parsed
        with self._engine.connect() as connection:
            return self._or_error(lambda: _list_body(self._ledger.list_charges(connection, parsed)))

    def list_refunds(self, query: dict[str, str]) -> Answer:
        """GET /v1/refunds: `charge_id` filters; `limit` and `starting_after` page through everything."""
        parsed = parse_query(query)
        if isinstance(parsed, Answer):
            return parsed
        with self._engine.connect() as connection:
            return self._or_error(lambda: _list_body(self._ledger.list_refunds(connection, parsed)))

    @staticmethod
    def _or_error(operation: Callable[[], Answer]) -> Answer:
        try:
            return operation()
        except LedgerError as error:
            return _error(error)


def charge_body(charge: Charge) -> dict[str, Any]:
    """A charge as the API shows it."""
    body = asdict(charge)
    body["created"] = body.pop("created_at_ms") // 1000
    return {"object": "charge", **body}


def refund_body(refund: Refund) -> dict[str, Any]:
    """A refund as the API shows it."""
    body = asdict(refund)
    body["created"] = body.pop("created_at_ms") // 1000
    body["settles_at"] = body.pop("settles_at_ms") / 1000
    return {"object": "refund", **body}


def _list_body(page: Page) -> Answer:
    items = [charge_body(item) if isinstance(item, Charge) else refund_body(item) for item in page.items]
    return Answer(200, {"object": "list", "items": items, "has_more": page.has_more})


def _error(error: LedgerError) -> Answer:
    status, code, param = _ERRORS[type(error)]
    return error_answer(status, code, str(error), param=param)
