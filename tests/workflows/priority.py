"""Handlers for the priority tests: a quick step that may send one more message."""
from incidents import workflow


@workflow.handler
def work_handler(message):
    """Handle a message; with "to", send one message there for the incident named by
    "for" (default: this message's incident)."""
    if message.get("to"):
        workflow.send({"IncidentID": message.get("for") or message["IncidentID"]},
                      message["to"])


@workflow.handler
def next_handler(message):
    pass


def RegisterHandlers():
    workflow.RegisterHandler(handler=work_handler, queue="priority_work")
    workflow.RegisterHandler(handler=next_handler, queue="priority_next")
