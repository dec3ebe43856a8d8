"""Money at the payment provider, in the saga's terms: a decline is PaymentDeclined, no answer (down, timed out,
the answer lost) is PaymentProviderUnavailable, retried with the same idempotency key, which the provider answers
with the first outcome instead of acting twice. Keys derive from (saga, step), so a retried, duplicated or
crashed step never charges or refunds twice.

Each step records its intent in the database before it asks the provider (the caller commits first), so an
outcome lost on the way is found again by asking with the same key. What a step learns about money comes from what
the provider keeps consistent: a same-key replay, or a read by id. Its search by saga lags its writes, as Stripe's
does, so an empty search never means "no charge" while a replay can still tell (docs/design.md §8).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from chalicelib.adapters import payment_provider as provider
from chalicelib.adapters.payment_provider import CURRENCY, Charge, Refund
from chalicelib.domain.errors import PaymentDeclined, PaymentProviderRefused, PaymentProviderUnavailable, RefundSettled
from chalicelib.settings import get_settings

CONFLICT = 409


def idempotency_key(saga_id: str, step: str) -> str:
    """The provider's idempotency key of one step of one saga."""
    return f"{saga_id}:{step}"


def charge(saga_id: str, payment_token: str, amount_cents: int, asked_since: datetime) -> Charge:
    """Capture the saga's charge once, its intent recorded at `asked_since`. Within the key's lifetime a retry asks
    again with the same key, which the provider answers with the first outcome (or a 409 while the first is still at
    work: PaymentProviderUnavailable, retried). Past it the same key would charge anew, so a charge made back then is
    looked for first, in the search by saga, which has long caught up by then."""
    with _in_saga_terms():
        if key_expired(asked_since):
            made = _searched(saga_id)
            if made is not None:
                return made
        return _capture(saga_id, payment_token, amount_cents)


def charge_held(saga_id: str, payment_token: str, amount_cents: int, asked_since: datetime) -> Charge | None:
    """The charge the provider holds for a saga whose charge had an unknown outcome, learned from what is consistent:
    within the key's lifetime by asking again with the same key (PaymentDeclined if it declined; if the first request
    never arrived, this one charges, and the caller refunds it at once, so the ledger nets to zero); past it, from the
    search by saga, which lags its writes by minutes at most. Never from an empty search alone: it lags."""
    with _in_saga_terms():
        if key_expired(asked_since):
            return _searched(saga_id)
        return _capture(saga_id, payment_token, amount_cents)


def charge_by_id(charge_id: str) -> Charge | None:
    """The charge `charge_id` as the provider holds it now (a read by id is consistent), with what is refunded."""
    with _in_saga_terms():
        return provider.provider_client().get_charge(charge_id)


def refunds_of(charge_id: str) -> list[Refund]:
    """The refunds of a charge, cancelled ones included: a listing filtered by charge, which is consistent (it is
    Stripe's `GET /v1/refunds?charge=`, unlike its search)."""
    with _in_saga_terms():
        return provider.provider_client().list_refunds(charge_id)


def key_expired(asked_since: datetime) -> bool:
    """Whether the provider may have forgotten an idempotency key first used at `asked_since`."""
    since = asked_since if asked_since.tzinfo else asked_since.replace(tzinfo=UTC)
    lifetime = timedelta(seconds=get_settings().payment_provider_key_ttl_seconds)
    return datetime.now(UTC) - since >= lifetime


def refund(charge_id: str, amount_cents: int, saga_id: str, step: str) -> Refund:
    """Refund once for (saga, step): asked again with the same key, the provider answers with the first refund."""
    with _in_saga_terms():
        return provider.provider_client().refund(charge_id, amount_cents, idempotency_key(saga_id, step))


def cancel_refund(refund_id: str) -> Refund:
    """Cancel a pending refund; a settled one cannot be (RefundSettled)."""
    with _in_saga_terms():
        try:
            return provider.provider_client().cancel_refund(refund_id)
        except provider.ProviderRefused as refused:
            if refused.status != CONFLICT:
                raise
            raise RefundSettled("the refund has settled at the provider; it can no longer be cancelled") from None


def _capture(saga_id: str, payment_token: str, amount_cents: int) -> Charge:
    client = provider.provider_client()
    return client.charge(saga_id, payment_token, amount_cents, CURRENCY, idempotency_key(saga_id, "process_payment"))


def _searched(saga_id: str) -> Charge | None:
    return next(iter(provider.provider_client().charges_for_saga(saga_id)), None)


@contextmanager
def _in_saga_terms() -> Iterator[None]:
    try:
        yield
    except provider.CardDeclined:
        raise PaymentDeclined("the card was declined") from None
    except provider.ProviderUnavailable as unavailable:
        raise PaymentProviderUnavailable(f"the payment provider did not answer: {unavailable}") from None
    except provider.ProviderAuthFailed:
        raise PaymentProviderRefused("the payment provider refused our API key") from None
    except provider.ProviderRefused as refused:
        raise PaymentProviderRefused(f"the payment provider refused the request ({refused.code})") from None
