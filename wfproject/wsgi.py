"""WSGI entry point for the admin."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wfproject.settings")
application = get_wsgi_application()
