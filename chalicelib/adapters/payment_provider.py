"""The payment provider's HTTP client: charges, refunds and the listings a ledger check needs.

Standard library only (it ships in the Lambda package): it raises its own errors, which the saga steps map
onto theirs. One attempt per call; the caller retries with the same idempotency key, which the provider answers
with the first outcome instead of charging twice. `http.client` is imported at first use: the steps that never
call the provider share this module with those that do, and should not pay for it in their cold start.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from chalicelib.settings import get_settings, reread_secret

_PAGE_SIZE = 100
CURRENCY = "usd"


class PaymentProviderError(Exception):
    """Anything the provider client raises."""


class ProviderUnavailable(PaymentProviderError):
    """No usable answer: down, timed out, 5xx or unreadable. The outcome is unknown; retry with the same key."""


class CardDeclined(PaymentProviderError):
    """The provider declined the card (402)."""


class ProviderAuthFailed(PaymentProviderError):
    """The provider refused the API key (401)."""


class ProviderRefused(PaymentProviderError):
    """The provider refused the request (400, 404, 409, ...): retrying it unchanged will not help."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Charge:
    id: str
    saga_id: str
    amount_cents: int
    currency: str
    status: str
    refunded_cents: int


@dataclass(frozen=True)
class Refund:
    id: str
    charge_id: str
    amount_cents: int
    status: str
    """`pending`, `settled` or `cancelled`."""


class PaymentProviderClient:
    """Calls the provider at `base_url` (`http://host:port`, optionally with a path prefix) with `api_key`."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout_seconds: float = 5.0,
        renewed_api_key: Callable[[], str] | None = None,
    ) -> None:
        """`renewed_api_key`, when given, reads the key again past every cache: after a 401 the key may have been
        rotated, and the request is sent once more with the key it returns, if that is another."""
        import http.client

        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the payment provider URL must be http(s)://host[:port][/prefix]")
        self._connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self._netloc = parts.netloc
        self._prefix = parts.path.rstrip("/")
        self._api_key = api_key
        self._timeout_seconds = timeout_seconds
        self._renewed_api_key = renewed_api_key

    def charge(
        self, saga_id: str, payment_token: str, amount_cents: int, currency: str, idempotency_key: str
    ) -> Charge:
        """Capture `amount_cents`; a retry with the same `idempotency_key` gets the first charge back."""
        body = {"saga_id": saga_id, "payment_token": payment_token, "amount_cents": amount_cents, "currency": currency}
        return _charge(self._call("POST", "/v1/charges", body, idempotency_key, redact=payment_token))

    def charges_for_saga(self, saga_id: str) -> list[Charge]:
        """The charges the provider's search finds for `saga_id`. On a real provider the search lags its writes (by
        up to an hour during outages): an empty answer does not mean that no charge was made."""
        return [_charge(item) for item in self._list("/v1/charges", {"saga_id": saga_id})]

    def get_charge(self, charge_id: str) -> Charge | None:
        """The charge `charge_id`, None if the provider has none."""
        found = self._call_or_none(f"/v1/charges/{quote(charge_id, safe='')}")
        return None if found is None else _charge(found)

    def refund(self, charge_id: str, amount_cents: int, idempotency_key: str) -> Refund:
        """Refund part of a charge; a retry with the same `idempotency_key` gets the first refund back."""
        body = {"charge_id": charge_id, "amount_cents": amount_cents}
        return _refund(self._call("POST", "/v1/refunds", body, idempotency_key))

    def cancel_refund(self, refund_id: str) -> Refund:
        """Cancel a pending refund (again is fine); a settled one raises `ProviderRefused` (409)."""
        return _refund(self._call("POST", f"/v1/refunds/{quote(refund_id, safe='')}/cancel", {}))

    def get_refund(self, refund_id: str) -> Refund | None:
        """The refund `refund_id` with its current status, None if the provider has none."""
        found = self._call_or_none(f"/v1/refunds/{quote(refund_id, safe='')}")
        return None if found is None else _refund(found)

    def list_charges(self) -> list[Charge]:
        """Every charge, oldest first (the listing is consistent, unlike the search by saga)."""
        return [_charge(item) for item in self._list("/v1/charges", {})]

    def list_refunds(self, charge_id: str | None = None) -> list[Refund]:
        """Every refund (of `charge_id` when given), oldest first."""
        return [_refund(item) for item in self._list("/v1/refunds", {"charge_id": charge_id} if charge_id else {})]

    def _list(self, path: str, filters: dict[str, str]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            query = {**filters, "limit": str(_PAGE_SIZE), **({"starting_after": items[-1]["id"]} if items else {})}
            page = self._call("GET", f"{path}?{urlencode(query)}")
            batch = page.get("items")
            if not isinstance(batch, list) or not all(isinstance(item, dict) and "id" in item for item in batch):
                raise ProviderUnavailable(f"unreadable listing from GET {path}")
            items.extend(batch)
            if not batch or page.get("has_more") is not True:
                return items

    def _call_or_none(self, path: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", path)
        except ProviderRefused as refused:
            if refused.status == 404:
                return None
            raise

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        key: str | None = None,
        redact: str | None = None,
    ) -> dict[str, Any]:
        try:
            return self._send(method, path, body, key, redact)
        except ProviderAuthFailed:
            renewed = self._renewed_api_key() if self._renewed_api_key else self._api_key
            if renewed == self._api_key:
                raise
            # A 401 changed nothing at the provider, so the same request is safe to send again.
            self._api_key = renewed
            return self._send(method, path, body, key, redact)

    def _send(
        self, method: str, path: str, body: dict[str, Any] | None, key: str | None, redact: str | None
    ) -> dict[str, Any]:
        import http.client

        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
        if key is not None:
            headers["Idempotency-Key"] = key
        encoded = None if body is None else json.dumps(body).encode()
        if encoded is not None:
            headers["Content-Type"] = "application/json"
        connection = self._connection_class(self._netloc, timeout=self._timeout_seconds)
        try:
            connection.request(method, self._prefix + path, body=encoded, headers=headers)
            response = connection.getresponse()
            status, raw = response.status, response.read()
        except (OSError, http.client.HTTPException) as error:
            raise ProviderUnavailable(
                f"{method} {path.split('?')[0]}: no answer from the payment provider ({type(error).__name__}); "
                "the outcome is unknown"
            ) from error
        finally:
            connection.close()
        return _answer(method, path.split("?")[0], status, raw, redact)


def _answer(method: str, path: str, status: int, raw: bytes, redact: str | None) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise ProviderUnavailable(f"{method} {path}: unreadable answer (HTTP {status})")
    if 200 <= status < 300:
        return payload
    code, message = str(payload.get("error", "unknown")), str(payload.get("message", ""))
    if redact:  # a payment token must never reach a log line, even if a provider echoed it
        code, message = code.replace(redact, "[token]"), message.replace(redact, "[token]")
    if status == 401:
        raise ProviderAuthFailed(f"the payment provider refused the API key: {message}")
    if status == 402:
        raise CardDeclined(message or "card declined")
    if status >= 500 or status == 429 or code == "idempotency_key_in_use":
        raise ProviderUnavailable(f"{method} {path}: HTTP {status} {code}: {message}")
    raise ProviderRefused(status, code, message)


def _charge(item: dict[str, Any]) -> Charge:
    try:
        return Charge(
            id=str(item["id"]),
            saga_id=str(item["saga_id"]),
            amount_cents=int(item["amount_cents"]),
            currency=str(item["currency"]),
            status=str(item["status"]),
            refunded_cents=int(item.get("refunded_cents", 0)),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ProviderUnavailable(f"unreadable charge from the payment provider ({error!r})") from None


def _refund(item: dict[str, Any]) -> Refund:
    try:
        return Refund(
            id=str(item["id"]),
            charge_id=str(item["charge_id"]),
            amount_cents=int(item["amount_cents"]),
            status=str(item["status"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ProviderUnavailable(f"unreadable refund from the payment provider ({error!r})") from None


@lru_cache(maxsize=1)
def provider_client() -> PaymentProviderClient:
    """The client of the configured provider (PAYMENT_PROVIDER_URL)."""
    settings = get_settings()
    if not settings.payment_provider_url:
        raise RuntimeError("PAYMENT_PROVIDER_URL is not set: no payment provider to call")
    return PaymentProviderClient(
        settings.payment_provider_url,
        settings.effective_payment_provider_api_key,
        settings.payment_provider_timeout_seconds,
        _renewed_api_key,
    )


def _renewed_api_key() -> str:
    """The API key read again from its secret (rotated, perhaps); the variable's, when it is not a secret."""
    settings = get_settings()
    reread_secret(settings.payment_provider_api_key_secret_arn)
    return settings.effective_payment_provider_api_key


def reset_client() -> None:
    provider_client.cache_clear()
