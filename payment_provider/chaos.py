"""Chaos for soak tests: some POSTs fail before doing anything, some lose their answer after committing, some
charges commit late."""

from __future__ import annotations

import random
import threading
import time


class Chaos:
    """Draws, reproducibly for a given seed, which requests misbehave; all rates 0 (the default) is off."""

    def __init__(
        self,
        fault_rate: float,
        lost_rate: float,
        latency_ms: float,
        seed: int | None,
        slow_capture_rate: float = 0.0,
    ) -> None:
        self.fault_rate = fault_rate
        self.lost_rate = lost_rate
        self.latency_ms = latency_ms
        self.slow_capture_rate = slow_capture_rate
        # Reproducible draws from a seed, not secrets: the `random` module is the right tool.
        self._random = random.Random(seed)  # noqa: S311  # nosec B311
        self._lock = threading.Lock()

    def delay(self) -> None:
        """Wait the configured added latency."""
        if self.latency_ms > 0:
            time.sleep(self.latency_ms / 1000)

    def fails_before_acting(self) -> bool:
        """Whether this POST answers 503 before it does anything."""
        return self._draw(self.fault_rate)

    def loses_answer(self) -> bool:
        """Whether this POST's answer is lost after its effect committed."""
        return self._draw(self.lost_rate)

    def holds_capture(self) -> bool:
        """Whether this charge commits only after the slow-capture hold."""
        return self._draw(self.slow_capture_rate)

    def _draw(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            return self._random.random() < rate
