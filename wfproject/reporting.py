"""Debug error pages that never show a secret: besides Django's own names (KEY, SECRET,
PASS, ...), every setting and environment value with URL or DSN in its name is hidden, and
any `scheme://user:password@` left in another value loses its password."""
from __future__ import annotations

import re
from typing import Any

from django.views.debug import SafeExceptionReporterFilter

_CREDENTIALS = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@", re.IGNORECASE)


def redact_urls(text: str) -> str:
    """`amqp://wf:secret@host/` -> `amqp://wf:********@host/`."""
    return _CREDENTIALS.sub(r"\g<head>********@", text)


class RedactingFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile(
        "API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|URL|DSN", flags=re.IGNORECASE)

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        value = super().cleanse_setting(key, value)
        return redact_urls(value) if isinstance(value, str) else value
