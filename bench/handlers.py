"""The benchmark's and soak's workflows, as handlers (bench/raw_tasks.py has the same shapes as
plain Celery tasks)."""
from incidents import workflow


@workflow.handler
def soak_hop_handler(message):
    """A chain: each hop sends the next until `left` reaches zero, which completes it."""
    left = message["left"]
    if left <= 0:
        workflow.Complete(message["IncidentID"])
    else:
        workflow.send(message={"IncidentID": message["IncidentID"], "left": left - 1},
                      queue="soak_hop")


@workflow.handler
def priority_hop_handler(message):
    """bench/priority.py: a hop of a chain as soak_hop's, or without `left` a backlog item,
    which does nothing."""
    if "left" not in message:
        return
    if message["left"] <= 0:
        workflow.Complete(message["IncidentID"])
    else:
        workflow.send(message={"IncidentID": message["IncidentID"], "left": message["left"] - 1},
                      queue="bench_priority")


@workflow.handler
def probe_handler(message):
    """Does nothing: its log row's `received` time measures send -> handler start."""


@workflow.handler
def scatter_handler(message):
    for n in range(message["width"]):
        workflow.send(message={"IncidentID": message["IncidentID"], "n": n,
                               "width": message["width"]}, queue="bench_work")


@workflow.handler
def work_handler(message):
    n = message["n"]
    workflow.send(message={"IncidentID": message["IncidentID"], "n": n,
                           "value": sum(range(n % 100)), "width": message["width"]},
                  queue="bench_gather")


@workflow.atomic
@workflow.handler
def gather_handler(message):
    incident_id = message["IncidentID"]
    workflow.Persist.Put(incident_id, message["value"])
    if len(workflow.Persist.Get(incident_id)) == message["width"]:
        workflow.Complete(incident_id)


def RegisterHandlers():
    workflow.RegisterHandler(handler=soak_hop_handler, queue="soak_hop")
    workflow.RegisterHandler(handler=priority_hop_handler, queue="bench_priority")
    workflow.RegisterHandler(handler=probe_handler, queue="bench_probe")
    workflow.RegisterHandler(handler=scatter_handler, queue="bench_scatter")
    workflow.RegisterHandler(handler=work_handler, queue="bench_work")
    workflow.RegisterHandler(handler=gather_handler, queue="bench_gather")
