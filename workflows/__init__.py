"""Workflow modules: handlers written against `from incidents import workflow`."""
