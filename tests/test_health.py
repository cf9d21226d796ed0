"""/health/: the database, the broker and (when locks live there) Redis, each really asked."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.usefixtures("broker")


def test_health_is_ok_when_the_database_and_the_broker_answer(client, db):
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_health_is_503_and_names_redis_when_the_lock_store_does_not_answer(client, db, settings):
    settings.WORKFLOW_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = client.get("/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == body["checks"]["broker"] == "ok"
    assert body["checks"]["redis"].startswith("ConnectionError")


def test_health_answers_get_only(client, db):
    assert client.post("/health/").status_code == 405
