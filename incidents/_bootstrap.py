"""Set Django up when the workflow API is imported by a stand-alone script."""
from __future__ import annotations

import os

import django
from django.apps import apps

if not apps.ready and not apps.loading:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wfproject.settings")
    django.setup()
