"""The soak's workflow: each incident is a chain of hops that completes at zero."""
from incidents import workflow


@workflow.handler
def soak_hop_handler(message):
    left = message["left"]
    if left <= 0:
        workflow.Complete(message["IncidentID"])
    else:
        workflow.send(message={"IncidentID": message["IncidentID"], "left": left - 1},
                      queue="soak_hop")


def RegisterHandlers():
    workflow.RegisterHandler(handler=soak_hop_handler, queue="soak_hop")
