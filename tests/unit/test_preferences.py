"""`Prefer: wait=N` as RFC 7240 reads it: unknown or unreadable preferences are ignored, never an error."""

from __future__ import annotations

import pytest

from chalicelib.entrypoints.preferences import requested_wait
from chalicelib.presentation.api_models import MAX_WAIT_SECONDS


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("wait=5", 5),
        ("wait=0", 0),
        ("WAIT = 7", 7),  # names compare case-insensitively; whitespace around `=` is removed (BWS)
        ('wait="5"', 5),  # a quoted string is the same value as the token
        ("respond-async, wait=10", 10),
        ("wait=5;foo=bar", 5),  # parameters of a preference it does not define are ignored
        ('foo="a, wait=3", wait=4', 4),  # a comma inside a quoted string separates nothing
        ("wait=0000000000000000000000003", 3),
        ("wait=21", MAX_WAIT_SECONDS),
        ("wait=" + "9" * 5000, MAX_WAIT_SECONDS),
    ],
)
def test_a_readable_wait_gives_its_seconds_cut_to_the_maximum(header: str, seconds: int) -> None:
    assert requested_wait({"prefer": header}) == seconds


@pytest.mark.parametrize(
    "header",
    [
        "",
        "respond-async",
        "handling=lenient",
        "wait",
        "wait=",
        "wait=-1",
        "wait=1.5",
        "wait=soon",
        'wait="5',
        "wait=5 x",
    ],
)
def test_no_wait_or_an_unreadable_one_is_ignored(header: str) -> None:
    assert requested_wait({"prefer": header}) is None


def test_only_the_first_wait_counts_even_when_it_cannot_be_read() -> None:
    assert requested_wait({"prefer": "wait=2, wait=9"}) == 2
    assert requested_wait({"prefer": "wait=later, wait=9"}) is None


def test_a_request_without_the_header_asks_for_no_wait() -> None:
    assert requested_wait({}) is None
