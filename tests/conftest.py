"""Shared fixtures: a clean broker per test, the workflow API, incidents."""
from __future__ import annotations

import pytest

from incidents import workflow
from incidents.engine import context
from incidents.testing import purge_queues


@pytest.fixture(autouse=True)
def _clean_staging():
    """Each test starts with nothing staged outside a handler."""
    context.outside_staging().outbox.clear()
    yield
    context.outside_staging().outbox.clear()


@pytest.fixture
def broker():
    """The configured broker with every registered queue empty."""
    purge_queues()
    yield
    purge_queues()


@pytest.fixture
def incident_id(db):
    return workflow.CreateIncident(name="test incident", kind="TEST")
