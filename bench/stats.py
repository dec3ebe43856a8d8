"""Latency statistics shared by the benchmarks."""

from __future__ import annotations

import statistics


def summary_ms(seconds: list[float]) -> dict[str, float]:
    """p50 and p99 (and the count) of a list of durations, in milliseconds."""
    ordered = sorted(seconds)
    p99 = statistics.quantiles(ordered, n=100, method="inclusive")[98] if len(ordered) > 1 else ordered[0]
    return {"p50_ms": 1000 * statistics.median(ordered), "p99_ms": 1000 * p99, "n": len(ordered)}
