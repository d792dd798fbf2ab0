"""Event-driven waits: poll a condition instead of sleeping a guessed time."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    predicate: Callable[[], object], *, timeout: float = 10.0, interval: float = 0.01
) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` seconds pass; its last truth."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
