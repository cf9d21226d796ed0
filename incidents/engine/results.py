"""Celery task results of handled messages (django-celery-results), written in the commit
that finishes the message: Celery's result backend would store each in a transaction of its
own after the task returns, one more database round trip per message. The row's task id is
the MessageID, so the admin and Flower find it from the log and back."""
from __future__ import annotations

import json

from celery import states
from django.utils import timezone
from django_celery_results.models import TaskResult

from incidents import conf
from incidents.engine import context
from incidents.engine.context import HandlerRun
from incidents.engine.registry import task_name


def record(run: HandlerRun, outcome: str, error: BaseException | None = None,
           trace: str = "") -> None:
    """Store the result of `run` (COMPLETE, or ERROR with `error`) in the caller's transaction."""
    if run.message_id is None or run.queue is None or not conf.get("STORE_TASK_RESULTS"):
        return
    status: str
    result: object
    if error is None:
        status, result = states.SUCCESS, outcome
    else:  # the shape Celery gives a failure, so Flower and the admin show it as one
        status, result = states.FAILURE, {"exc_type": type(error).__name__,
                                          "exc_message": [str(error)],
                                          "exc_module": type(error).__module__}
    TaskResult.objects.bulk_create([TaskResult(
        task_id=run.message_id, task_name=task_name(run.queue), status=status,
        result=json.dumps(result), traceback=trace or None, content_type="application/json",
        content_encoding="utf-8", worker=context.consumer(), date_done=timezone.now())],
        ignore_conflicts=True)
