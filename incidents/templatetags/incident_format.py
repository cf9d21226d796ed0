"""The console's formats as template filters: `{{ seconds|human_duration }}`,
`{{ when|timestamp }}` (incidents/formatting.py)."""
from __future__ import annotations

from django import template

from incidents import formatting

register = template.Library()
register.filter("human_duration", formatting.human_duration)
register.filter("timestamp", formatting.timestamp)
