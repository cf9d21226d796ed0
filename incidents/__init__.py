"""Incidents: the Django app holding the workflow engine and its records."""
import os

import django
from django.apps import apps

# A stand-alone script that imports the workflow API gets Django set up on first use. Like
# the seed's scripts it registers its own handlers, so WORKFLOW_MODULES are not loaded
# unless the environment names them.
if not apps.ready and not apps.loading:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wfproject.settings")
    os.environ.setdefault("WORKFLOW_MODULES", "")
    django.setup()
