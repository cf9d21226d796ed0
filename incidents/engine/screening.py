"""Checks on a raw broker message before anything decodes it, so a hostile message is
dead-lettered with its reason instead of killing or starving the worker: too large, nested
too deep for the recursive code after it (decoders, the pool's pickling), compressed, or
carrying a far-off ETA the engine did not set."""
from __future__ import annotations

import datetime as dt
import re
from typing import Any

from incidents import conf
from incidents.engine import retrying
from incidents.engine.validation import MAX_DEPTH

#: Celery's task envelope, [args, kwargs, embed], nests a message two levels deeper.
MAX_BODY_DEPTH = MAX_DEPTH + 3
#: What the envelope and the engine's retry arguments add to a message's bytes.
ENVELOPE_BYTES = 64 * 1024
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def nested_deeper_than(body: bytes, limit: int) -> bool:
    """Whether JSON text nests arrays and objects deeper than `limit`, found without
    recursion (brackets inside strings do not count)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # the common case, at C speed
    depth = 0
    for bracket in _STRING.sub(b"", body).translate(None, _NOT_BRACKETS):
        depth += 1 if bracket in b"[{" else -1
        if depth > limit:
            return True
    return False


def _latest_retry_eta() -> dt.datetime:
    # The engine's own waits last at most RETRY_MAX_SECONDS (jittered up by a quarter), a
    # handler's retries at most retrying.MAX_DELAY_SECONDS.
    longest = max(2 * float(conf.get("RETRY_MAX_SECONDS")), retrying.MAX_DELAY_SECONDS)
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=longest + 60)


def _eta_fault(headers: dict[str, Any]) -> str | None:
    eta = headers.get("eta")
    if eta is None:
        return None
    if not headers.get("retries"):
        return f"it has an ETA ({eta!r:.40}) the engine did not set"
    try:
        when = dt.datetime.fromisoformat(str(eta))
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
    except ValueError:
        return f"its ETA {eta!r:.40} is not a date"
    if when > _latest_retry_eta():
        return f"its ETA {eta!r:.40} is further off than any retry of the engine's"
    return None


def refusal(body: Any, headers: dict[str, Any] | None) -> str | None:
    """Why a raw message must be dead-lettered before it is decoded, or None."""
    headers = headers or {}
    if headers.get("compression"):
        return f"its body is compressed ({headers['compression']!r:.40}); the engine never is"
    if isinstance(body, str):
        body = body.encode("utf-8", "replace")
    if isinstance(body, (bytes, bytearray, memoryview)):
        body = bytes(body)
        limit = int(conf.get("MAX_MESSAGE_BYTES")) + ENVELOPE_BYTES
        if len(body) > limit:
            return f"its body is {len(body)} bytes, over {limit} (WORKFLOW_MAX_MESSAGE_BYTES)"
        if nested_deeper_than(body, MAX_BODY_DEPTH):
            return f"its body nests deeper than {MAX_BODY_DEPTH} levels"
    return _eta_fault(headers)
