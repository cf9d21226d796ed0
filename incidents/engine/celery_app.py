"""The project's Celery app, found through settings.CELERY_APP ("module:attribute"), as
Django finds WSGI_APPLICATION: the incidents app does not import its project."""
from __future__ import annotations

import functools
from typing import Any

from celery import Celery
from django.conf import settings
from django.utils.module_loading import import_string

from incidents.exceptions import WorkflowConfigError


@functools.cache
def _load(path: str) -> Celery:
    try:
        app = import_string(path.replace(":", "."))
    except ImportError as exc:
        raise WorkflowConfigError(f"settings.CELERY_APP {path!r} cannot be imported: {exc}; "
                                  "name the project's Celery app, e.g. 'wfproject.celery:app'"
                                  ) from None
    if not isinstance(app, Celery):
        raise WorkflowConfigError(f"settings.CELERY_APP {path!r} is a {type(app).__name__}, "
                                  "not a Celery app")
    return app


def get() -> Any:  # Any: Celery's type stubs lack much of what the engine uses (its pools)
    path = getattr(settings, "CELERY_APP", "")
    if not path:
        raise WorkflowConfigError("settings.CELERY_APP is not set; name the project's Celery "
                                  "app in settings, e.g. CELERY_APP = 'wfproject.celery:app'")
    return _load(path)
