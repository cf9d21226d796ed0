"""Operators' actions are recorded with who, when and why (OperatorAction)."""
from __future__ import annotations

from io import StringIO

from django.core.management import call_command

from incidents.engine import audit, operations
from incidents.models import IncidentStatus


def test_cancel_and_kill_are_recorded_with_who_and_why(incident_id):
    operations.cancel_incident(incident_id, reason="false alarm", by="alice (admin)")
    call_command("kill_incidents", incident_id, "--noinput", "--reason", "stop it now",
                 stdout=StringIO())
    kill, cancel = audit.history(incident_id)
    assert (cancel.action, cancel.by, cancel.reason) == ("cancel", "alice (admin)", "false alarm")
    assert cancel.details == {"status_before": IncidentStatus.PENDING}
    assert (kill.action, kill.reason) == ("kill", "stop it now")
    assert kill.by.endswith("(command line)")
    assert kill.details["status_before"] == IncidentStatus.CANCELLED
    assert kill.at >= cancel.at
