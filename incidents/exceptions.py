"""The one exception tree of the workflow API, rooted at WorkflowError."""
from __future__ import annotations


class WorkflowError(Exception):
    """Base of every error the workflow API raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        incident_id: str | None = None,
        queue: str | None = None,
        handler: str | None = None,
    ) -> None:
        super().__init__(message)
        self.incident_id = incident_id
        self.queue = queue
        self.handler = handler


class MessageError(WorkflowError, ValueError):
    """A message given to send() breaks a rule (missing IncidentID, not JSON, too large)."""


class MessageTypeError(WorkflowError, TypeError):
    """A value given to the API has the wrong type (a message that is not a dict)."""


class UnknownIncident(WorkflowError, LookupError):
    """An IncidentID names no incident."""


class QueueNameError(WorkflowError, ValueError):
    """A queue name is empty, malformed, or reserved (starts with '_')."""


class HandlerRegistrationError(WorkflowError, ValueError):
    """RegisterHandler() was given something it cannot bind."""


class WorkflowConfigError(WorkflowError):
    """The workflow configuration (WORKFLOW_MODULES, broker, locks) is unusable."""


class UnknownResult(WorkflowError, LookupError):
    """OpenResult() was given a name the incident has no result file of."""


class NotResumable(WorkflowError):
    """Resume was asked of an incident that cannot be resumed (live, not failed, or what it
    kept for a resume is gone); the message says why."""


class IncidentNotLive(MessageError):
    """An operator's message was sent to an incident that has ended (not PENDING or ACTIVE)."""


class LockTimeout(WorkflowError, TimeoutError):
    """GetLock() could not take the lock within its timeout."""


class BrokerUnavailable(WorkflowError, ConnectionError):
    """The message broker could not be reached."""


class Deferred(WorkflowError):
    """A message cannot be handled yet (lock held, cleanup waiting); retry after `delay`."""

    def __init__(self, message: str, *, delay: float, **fields: str | None) -> None:
        super().__init__(message, **fields)
        self.delay = delay


class Retry(WorkflowError):
    """Raised by a handler to be run again later: its effects are discarded and the message
    is delivered again after `delay` seconds (None: the handler's backoff). It is retried up
    to the handler's `retries`, or 3 times if it has none; then it fails as any error does."""

    def __init__(self, delay: float | None = None, reason: str = "") -> None:
        super().__init__(reason or "the handler asked to be retried")
        if delay is not None and (isinstance(delay, bool) or not isinstance(delay, (int, float))
                                  or delay < 0):
            raise ValueError(f"Retry(): delay {delay!r} must be a number of seconds >= 0, "
                             "or None for the handler's backoff")
        self.delay = delay
        self.reason = reason
