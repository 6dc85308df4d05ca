"""Helpers shared by the test suites (not a test module: pytest does not collect it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


def wait_for(cond: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll ``cond`` until it returns something truthy and return that; after ``timeout``
    seconds fail naming ``what``.

    Use it instead of a bare ``time.sleep`` whenever a test waits for something to happen: it
    returns as soon as the condition holds and fails with a message instead of asserting on a
    state the machine has not reached yet. A sleep that *is* the test (an outage, an
    observation window in which nothing may happen) stays a sleep, with a comment saying so.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


async def wait_for_async(
    cond: Callable[[], Any], timeout: float, what: str, every: float = 0.05
) -> Any:
    """:func:`wait_for` inside an event loop: polls with ``asyncio.sleep``, so the loop's other
    tasks keep running."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)
