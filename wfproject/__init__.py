"""The Django project; the Celery app is wfproject.celery.app (`celery -A wfproject`)."""
