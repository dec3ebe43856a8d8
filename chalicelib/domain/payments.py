"""Money at the payment provider, in the saga's terms: a decline is PaymentDeclined, no answer (down, timed out,
the answer lost) is PaymentProviderUnavailable, retried with the same idempotency key, which the provider answers
with the first outcome instead of acting twice. Keys derive from (saga, step), so a retried, duplicated or
crashed step never charges or refunds twice.

Each step records its intent in the database before it asks the provider (the caller commits first), so an
outcome lost on the way is found again by asking with the same key.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from chalicelib.adapters import payment_provider as provider
from chalicelib.adapters.payment_provider import CURRENCY, Charge, Refund
from chalicelib.domain.errors import PaymentDeclined, PaymentProviderRefused, PaymentProviderUnavailable, RefundSettled

CONFLICT = 409


def idempotency_key(saga_id: str, step: str) -> str:
    """The provider's idempotency key of one step of one saga."""
    return f"{saga_id}:{step}"


def charge(saga_id: str, payment_token: str, amount_cents: int) -> Charge:
    with _in_saga_terms():
        client = provider.provider_client()
        return client.charge(
            saga_id, payment_token, amount_cents, CURRENCY, idempotency_key(saga_id, "process_payment")
        )


def charges_of(saga_id: str) -> list[Charge]:
    """Every charge the provider holds for the saga: what tells an unknown outcome apart."""
    with _in_saga_terms():
        return provider.provider_client().charges_for_saga(saga_id)


def refund(charge_id: str, amount_cents: int, saga_id: str, step: str) -> Refund:
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
