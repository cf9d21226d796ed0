"""Django set up for a stand-alone script, in the seed's style: a plain Python file that does
`from incidents import workflow` (which imports this first) and registers its own handlers.
Inside a Django process (manage.py, a worker, the tests) Django is set up already and this
does nothing. WORKFLOW_MODULES are not loaded unless the environment names them."""
import os

import django
from django.apps import apps

if not apps.ready and not apps.loading:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wfproject.settings")
    os.environ.setdefault("WORKFLOW_MODULES", "")
    django.setup()
