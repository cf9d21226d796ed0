"""Handlers that attach result files (workflow.AttachResult), for tests/test_result_files.py."""
from __future__ import annotations

from incidents import workflow

REPORT = "id,burnt_km2\nC1,12.5\n"
# A 1 x 1 PNG (one opaque red pixel).
PIXEL_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de"
    "0000000c49444154789c63f8cfc0000003010100c9fe92ef0000000049454e44ae426082")


@workflow.handler
def attach_handler(message):
    """Attach a file written to the scratch directory, and a text under a name; complete."""
    incident_id = message["IncidentID"]
    image = workflow.IncidentDir(incident_id) / "pixel.png"
    image.write_bytes(PIXEL_PNG)
    workflow.AttachResult(incident_id, image, title="one red pixel")
    workflow.AttachResult(incident_id, "report.csv", REPORT)
    workflow.Complete(incident_id)


@workflow.handler
def attach_then_fail_handler(message):
    workflow.AttachResult(message["IncidentID"], "doomed.txt", "never stored")
    raise RuntimeError("failing after AttachResult")


def RegisterHandlers():
    workflow.RegisterHandler(handler=attach_handler, queue="attach_probe")
    workflow.RegisterHandler(handler=attach_then_fail_handler, queue="attach_probe_fail")
