"""The Celery app: configuration from celeryconfig.py, the outbox relay as a worker step."""
from __future__ import annotations

import os

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wfproject.settings")

# The embedded broker: kombu's filesystem transport with atomic writes (see fsbroker.py).
TRANSPORT_ALIASES.setdefault("wffs", "incidents.engine.fsbroker:Transport")

app = Celery("wfproject")
app.config_from_object("celeryconfig")
# Named, not imported: importing the engine here would set Django up too early.
app.steps["worker"].add("incidents.engine.relay:RelayStep")
