"""Log records of the workflow carry the incident, queue and message being handled, and can be
written as JSON lines (WF_LOG_FORMAT=json) for log collectors."""
from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

CONTEXT_FIELDS = ("incident_id", "queue", "message_id")


class WorkflowContext(logging.Filter):
    """Adds incident_id, queue and message_id ("-" outside a delivery) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Imported here: logging is configured before Django's apps (and models) are ready.
        from incidents.engine.context import current_run, delivery

        run, handling = current_run.get(), delivery.get() or {}
        for name in CONTEXT_FIELDS:  # the run (a direct call has no queue), else the delivery
            setattr(record, name, getattr(run, name, None) or handling.get(name) or "-")
        return True


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, process, logger, message, the workflow context
    and, for errors, the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname, "process": record.processName, "logger": record.name,
            "message": record.getMessage(),
            **{name: getattr(record, name, "-") for name in CONTEXT_FIELDS},
        }
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)
