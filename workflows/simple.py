"""The seed's example workflow: Start -> A -> B -> End."""
from incidents import workflow


@workflow.handler
def A_handler(message):
    print("Hello from A")
    workflow.send(message=message, queue="B_queue")


@workflow.handler
def B_handler(message):
    print("Hello from B")
    workflow.Complete(message["IncidentID"])


def RegisterHandlers():
    workflow.RegisterKind("DUMMY_INCIDENT", queue="A_queue", description="The seed's A -> B example")
    workflow.RegisterHandler(handler=A_handler, queue="A_queue")
    workflow.RegisterHandler(handler=B_handler, queue="B_queue")
