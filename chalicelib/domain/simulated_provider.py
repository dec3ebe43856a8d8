"""The simulated payment provider: its tokens behave like a card provider's test cards."""

from __future__ import annotations

from chalicelib.domain.errors import PaymentDeclined, PaymentProviderUnavailable

APPROVES = "tok_visa"
DECLINES = "tok_declined"
FLAKY = "tok_flaky"


def charge(token: str, amount_cents: int, saga_id: str, attempt: int) -> str:
    """Capture `amount_cents`; the provider reference is keyed on the saga, so a repeat charges nothing new."""
    if token == DECLINES:
        raise PaymentDeclined(f"card declined for {amount_cents} cents")
    if token == FLAKY and attempt == 1:
        raise PaymentProviderUnavailable("payment provider timed out; try again")
    if token not in (APPROVES, FLAKY):
        raise PaymentDeclined(f"unknown payment token {token!r}")
    return f"ch_{saga_id}"
