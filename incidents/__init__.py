"""Incidents: the Django app holding the workflow engine and its records."""
