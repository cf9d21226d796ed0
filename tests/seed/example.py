from incidents import workflow

#define the handlers for A and B
@workflow.handler
def A_handler(message):
    #do something with message
    print("Hello from A")
    #enqueue message to queue associated with B. 
    #This is automatically sent as this handler exits
    workflow.send(message=message,queue="B_queue")

@workflow.handler
def B_handler(message):
    #do something with message
    print("Hello from B")
    
    #Tell the workflow system that this incident is finished
    workflow.Complete(message["IncidentID"])
    
    
if __name__ == "__main__":
    #Open connection to RabbitMQ
    workflow.OpenConnection()

    #register these handlers to the queues
    workflow.RegisterHandler(handler=A_handler,queue="A_queue")
    workflow.RegisterHandler(handler=B_handler,queue="B_queue")

    #create an incident
    IncidentID = workflow.CreateIncident(name="some name",kind="DUMMY_INCIDENT")
    
    #create a dictionary for the message and include the IncidentID
    message={ "IncidentID" : IncidentID}

    #enqueue message to A to start workflow
    workflow.send(queue="A_queue",message=message)

    #send the enqueued message
    workflow.FlushMessages()

    #execute the workflow (this starts up an infinite loop)
    workflow.execute()

