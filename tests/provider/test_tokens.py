"""The test cards and their `_<suffix>` rule (no I/O)."""

from __future__ import annotations

import pytest

from payment_provider.tokens import FirstAttempts, TokenBehaviour, behaviour_of


@pytest.mark.parametrize(
    ("token", "behaviour"),
    [
        ("tok_visa", TokenBehaviour.APPROVES),
        ("tok_visa_abc123", TokenBehaviour.APPROVES),
        ("tok_visa_" + "a" * 40, TokenBehaviour.APPROVES),
        ("tok_declined_X9", TokenBehaviour.DECLINES),
        ("tok_flaky", TokenBehaviour.FLAKY),
        ("tok_lost_response", TokenBehaviour.LOSES_RESPONSE),
        ("tok_lost_response_7", TokenBehaviour.LOSES_RESPONSE),
        ("tok_visa_", TokenBehaviour.UNKNOWN),
        ("tok_visa_" + "a" * 41, TokenBehaviour.UNKNOWN),
        ("tok_visa-x", TokenBehaviour.UNKNOWN),
        ("tok_visa_a_b", TokenBehaviour.UNKNOWN),
        ("tok_visa_é", TokenBehaviour.UNKNOWN),
        ("tok_visa_1\n", TokenBehaviour.UNKNOWN),
        ("TOK_VISA", TokenBehaviour.UNKNOWN),
        ("tok_lost", TokenBehaviour.UNKNOWN),
        ("", TokenBehaviour.UNKNOWN),
    ],
)
def test_a_token_behaves_like_its_test_card_prefix(token: str, behaviour: TokenBehaviour) -> None:
    assert behaviour_of(token) is behaviour


def test_first_attempts_says_first_only_once_per_key() -> None:
    attempts = FirstAttempts()
    assert attempts.is_first(("account", "key-1"))
    assert not attempts.is_first(("account", "key-1"))
    assert attempts.is_first(("account", "key-2"))
