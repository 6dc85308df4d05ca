"""Retry decisions for a failed attempt: how many attempts, how long to wait, what is final.

Pure and deterministic: apply calls these on every replica, so they must give the same answer
everywhere. The backoff is computed in exact rational arithmetic (``fractions.Fraction``) from
the policy's stored numbers: a double's value is exact, so ``initial * multiplier ** (n - 1)``
has one true value and no libm ``pow`` (which may differ in the last bit between platforms)
is involved. It is rounded half-up to whole milliseconds.

A job with no policy (created without one, or before policies existed) keeps the old
behaviour: a fixed backoff, ``default_ms``, carried in the command by the leader.
"""

from __future__ import annotations

import math
from fractions import Fraction

from schedd.pb import types_pb2

DEFAULT_MAX_ATTEMPTS = 5
MAX_ATTEMPTS_LIMIT = 100
DAY_MS = 86_400_000
DEFAULT_INITIAL_BACKOFF_MS = 1000
DEFAULT_MULTIPLIER = 2.0
MAX_MULTIPLIER = 10.0
DEFAULT_MAX_BACKOFF_FACTOR = 100  # max_backoff 0 in a request = 100 x initial (at most 1 day)

_HALF = Fraction(1, 2)


def policy_of(job: types_pb2.Job | None) -> types_pb2.RetryPolicy | None:
    """The job's retry policy, or None when it has none (the fixed-backoff default applies)."""
    if job is None or not job.HasField("retry"):
        return None
    return job.retry


def max_attempts(job: types_pb2.Job | None) -> int:
    """Deliveries a run gets: the policy's, else the job's own field, else 5."""
    policy = policy_of(job)
    return (
        (policy.max_attempts if policy is not None else 0)
        or (job.max_attempts if job else 0)
        or DEFAULT_MAX_ATTEMPTS
    )


def backoff_ms(policy: types_pb2.RetryPolicy | None, failed: int, default_ms: int) -> int:
    """The wait after the ``failed``-th failed attempt (1 = the first):
    ``min(max_backoff, initial * multiplier ** (failed - 1))``, rounded half-up to ms.

    Never raises, whatever the numbers (a policy that bypassed validation is clamped into the
    validated ranges), because apply must not.
    """
    if policy is None:
        return max(0, default_ms)
    initial = policy.initial_backoff_ms if policy.HasField("initial_backoff_ms") else default_ms
    initial = min(max(0, initial), DAY_MS)
    cap = min(max(initial, policy.max_backoff_ms), DAY_MS)
    m = policy.multiplier
    mult = Fraction(min(max(m, 1.0), MAX_MULTIPLIER)) if math.isfinite(m) else Fraction(1)
    value = Fraction(initial)
    if mult > 1:
        for _ in range(max(0, failed - 1)):
            if value >= cap:
                break
            value *= mult
    return math.floor(min(value, Fraction(cap)) + _HALF)


def non_retryable(policy: types_pb2.RetryPolicy | None, exit_code: int | None, error: str) -> str:
    """Why this failure must not be retried ("" = it may be): a listed exit code, or an error
    text containing a listed substring."""
    if policy is None:
        return ""
    if exit_code is not None and exit_code in policy.non_retryable_exit_codes:
        return f"exit code {exit_code} is non-retryable"
    for text in policy.non_retryable_errors:
        if text and text in error:
            return f"error matches non-retryable {text!r}"
    return ""
