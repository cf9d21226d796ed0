"""Retries of a failed handler run: the policy's checks, whether to retry, and when."""
from __future__ import annotations

import random
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from incidents.engine.registry import DEFAULT_RETRY_LIMIT, RetryPolicy
from incidents.exceptions import HandlerRegistrationError, Retry

MAX_RETRIES = 100
MAX_DELAY_SECONDS = 600.0  # a backoff grows fast: no retry waits longer than 10 minutes
JITTER = 0.25  # +-25%, so retries of many messages that failed together spread out
#: A log row's comment starts with this while (and after) its message waits for a retry.
NOTE_PREFIX = "retry "


def policy(retries: Any, backoff: Any, retry_on: Any, queue: str) -> RetryPolicy:
    """RegisterHandler()'s retry options, checked."""
    def refuse(text: str) -> HandlerRegistrationError:
        return HandlerRegistrationError(f"RegisterHandler(): {text}", queue=queue)

    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
        raise refuse(f"retries {retries!r} must be a whole number from 0 to {MAX_RETRIES}")
    if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or not backoff >= 1:
        raise refuse(f"retry_backoff {backoff!r} must be a number >= 1 (the delay before "
                     "retry n is retry_backoff ** (n-1) seconds)")
    classes = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    if not classes or not all(isinstance(c, type) and issubclass(c, BaseException)
                              for c in classes):
        raise refuse(f"retry_on {retry_on!r} must be an exception class or a tuple of them, "
                     "e.g. (ConnectionError, TimeoutError)")
    return RetryPolicy(retries, float(backoff), classes)


def limit(policy: RetryPolicy, error: BaseException) -> int:
    """How many retries `error` may have under `policy` (0: it fails now). A time limit
    overrun is never retried: the limit is there to stop a run that would not end."""
    if isinstance(error, Retry):
        return policy.retries or DEFAULT_RETRY_LIMIT
    if isinstance(error, SoftTimeLimitExceeded) or not isinstance(error, policy.retry_on):
        return 0
    return policy.retries


def delay(policy: RetryPolicy, error: BaseException, retry: int) -> float:
    """Seconds before retry number `retry` (1-based): Retry(delay=...) as given, else the
    backoff, jittered."""
    if isinstance(error, Retry) and error.delay is not None:
        return min(float(error.delay), MAX_DELAY_SECONDS)
    base = min(policy.backoff ** (retry - 1), MAX_DELAY_SECONDS)
    return min(base * random.uniform(1 - JITTER, 1 + JITTER), MAX_DELAY_SECONDS)


def note(retry: int, retries: int, seconds: float, error: BaseException) -> str:
    """The log row's comment line for a retry: "retry 2/3 in 4.1 s after ValueError: ..."."""
    return (f"{NOTE_PREFIX}{retry}/{retries} in {seconds:.1f} s after "
            f"{type(error).__name__}: {str(error)[:300]}")
