"""Callback-driven handlers in the style of the original's wildfire and mosquito workflows
(our code, their patterns): external services call back with providedCaller tags and the
handlers branch on message["originator"]; results fan in through a plain handler's Put and
Get with the original's keyword names; a try-acquire CheckLock guards a shared mosaic; the
original's health check sends its test incident name instead of an IncidentID.
"""
import os
import time

from incidents import workflow

SIMULATION_QUEUE = "compat:fire_simulation"
REPORT_QUEUE = "compat-fire-report"
TILE_QUEUE = "compat.tiles"
HEALTH_QUEUE = "test_workflow"


@workflow.handler
def fire_simulation(msg):
    incident = msg["IncidentID"]
    if msg["originator"] == "Simulation Running":
        workflow.logger.info("simulation %s of %s is running", msg["simulation"], incident)
        return
    if msg["originator"] != "Simulation Completed":
        raise ValueError("unexpected originator %s" % msg["originator"])

    workflow.Persist.Put(incident=incident, data={"simulation": msg["simulation"],
                                                  "result": msg["result"]})
    done = workflow.Persist.Get(incident=incident)
    if len(done) < msg["expected"]:
        return
    msg["results"] = sorted(d["result"] for d in done)
    workflow.send(msg, REPORT_QUEUE)


@workflow.handler
def fire_report(msg):
    with open(msg["report_file"], "a") as f:
        f.write(" ".join(str(r) for r in msg["results"]) + "\n")
    workflow.Complete(msg["IncidentID"])


@workflow.handler
def mosaic_tile(msg):
    incident = msg["IncidentID"]
    if not workflow.CheckLock("mosaic", incident):
        workflow.send(msg, TILE_QUEUE)  # someone is writing: try again, as a new message
        return
    try:
        with open(msg["mosaic_file"], "a") as f:
            f.write("start %d %d\n" % (msg["tile"], os.getpid()))
            f.flush()
            time.sleep(0.02)  # widen the window another writer would need
            f.write("end %d %d\n" % (msg["tile"], os.getpid()))
    finally:
        workflow.ReleaseLock("mosaic", incident)
    workflow.Persist.Put(incident, {"tile": msg["tile"]})
    if len(workflow.Persist.Get(incident)) == msg["tiles"]:
        workflow.Complete(incident)


@workflow.handler
def test_workflow(msg):
    if msg["IncidentID"] != "test_workflow_health" or not workflow._IsActive(msg["IncidentID"]):
        raise ValueError("health probe for %r is not live" % msg["IncidentID"])
    with open(msg["reply_file"], "a") as f:
        f.write("healthy\n")
    workflow.Complete(msg["IncidentID"])


def RegisterHandlers():
    workflow.RegisterHandler(fire_simulation, SIMULATION_QUEUE)
    workflow.RegisterHandler(fire_report, REPORT_QUEUE)
    workflow.RegisterHandler(mosaic_tile, TILE_QUEUE)
    workflow.RegisterHandler(test_workflow, HEALTH_QUEUE)
