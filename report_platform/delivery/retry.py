"""Retry a delivery on transient failures, with exponential backoff and jitter."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from report_platform.delivery.errors import TransientDeliveryError

log = logging.getLogger(__name__)

T = TypeVar("T")


def backoff_delay(attempt: int, base_delay: float, max_delay: float, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based): half fixed, half random.

    Keeping half of the exponential step fixed guarantees the server real breathing room;
    the random half spreads out many runs that failed at the same moment.
    """
    step = min(max_delay, base_delay * (2 ** (attempt - 1)))
    return step / 2 + rng() * step / 2


def deliver_with_retries(
    func: Callable[[], T],
    *,
    attempts: int = 4,
    base_delay: float = 2.0,
    max_delay: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
) -> T:
    """Call `func` until it succeeds, retrying only `TransientDeliveryError`.

    Permanent errors and anything unexpected propagate at once; the last transient error
    propagates once `attempts` calls have failed.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for attempt in range(1, attempts + 1):
        try:
            return func()
        except TransientDeliveryError as exc:
            if attempt == attempts:
                raise
            delay = backoff_delay(attempt, base_delay, max_delay, rng)
            log.warning(
                "delivery attempt %d/%d failed (%s); retrying in %.1fs",
                attempt,
                attempts,
                exc,
                delay,
            )
            sleep(delay)
    raise AssertionError("unreachable")
