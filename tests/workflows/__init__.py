"""Workflow modules used only by the tests."""
