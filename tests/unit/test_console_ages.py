"""The console's ages: how long ago, in the two largest units."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chalicelib.presentation.console_page import age, duration

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (59.9, "59s"), (60, "1m 0s"), (3_725, "1h 2m"), (90_061, "1d 1h"), (-5, "0s")],
)
def test_a_duration_is_shown_in_its_two_largest_units(seconds: float, shown: str) -> None:
    assert duration(seconds) == shown


def test_an_age_counts_from_an_iso_time_with_or_without_its_offset() -> None:
    assert age("2026-12-06T11:20:30+00:00", NOW) == "39m 30s"
    assert age("2026-12-06T13:20:30+02:00", NOW) == "39m 30s"
    assert age("2026-12-06T11:20:30", NOW) == "39m 30s"
