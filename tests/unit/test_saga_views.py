"""How answers show a saga's request: the payment token masked (docs/design.md §3.4)."""

from __future__ import annotations

import pytest

from chalicelib.presentation.saga_views import public_input


@pytest.mark.parametrize(
    ("token", "shown"),
    [
        ("tok_visa_4242abcd", "\u2026abcd"),
        ("tok_visa_abc", "\u2026_abc"),
        ("tok_visa_ab", "\u2026"),
        ("tok_visa", "\u2026"),
        ("", "\u2026"),
    ],
    ids=["long", "exactly-12", "11", "a-test-card", "empty"],
)
def test_a_token_shows_its_last_4_only_when_it_has_12_characters_or_more(token: str, shown: str) -> None:
    request = {"customer_id": "c-1", "sku": "SKU-MOUSE", "quantity": 1, "payment_token": token}

    assert public_input(request) == {"customer_id": "c-1", "sku": "SKU-MOUSE", "quantity": 1, "payment_method": shown}


def test_a_request_without_a_token_shows_no_payment_method() -> None:
    assert public_input({"order_id": "o-1", "quantity": 1, "reason": "late"}) == {
        "order_id": "o-1",
        "quantity": 1,
        "reason": "late",
    }
