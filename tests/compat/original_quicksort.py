"""A quicksort in the style of the original manager's own (our code, their patterns): the
merge handler is a plain handler that Puts its part, then Gets every part to find its
sibling, and goes on only if it is there; nodes are tagged for the graph; the incident is
declared with positional arguments. Only the import line would differ in the original.

Its handler is named merge_handler, like the one in workflows/quicksort.py: both modules
load in one worker. Queue names hold '.' and '-', as RabbitMQ users write them.
"""
import json

from incidents import workflow

SORT_QUEUE = "compat.quicksort"
MERGE_QUEUE = "compat-merge"


def check(x):
    for i in range(len(x) - 1):
        if x[i] > x[i + 1]:
            return False
    return True


def submit(numbers, result_file):
    incident = workflow.CreateIncident("quicksort", "QUICKSORT")
    msg = {}
    msg["IncidentID"] = incident
    msg["depth"] = 0
    msg["position"] = 0
    msg["x"] = numbers
    msg["result_file"] = result_file
    workflow.send(msg, SORT_QUEUE, src_tag="Start", dest_tag="split_000_00000")
    workflow.FlushMessages()
    return incident


@workflow.handler
def quicksort_handler(msg):
    depth = msg["depth"]
    position = msg["position"]
    x = msg["x"]
    me = "split_%03d_%05d" % (depth, position)

    if check(x):
        workflow.send(msg, MERGE_QUEUE, src_tag=me, dest_tag="merge_%03d_%05d" % (depth, position // 2))
        return

    pivot = x.pop()
    x0 = []
    x1 = [pivot]
    for val in x:
        if val < pivot:
            x0.append(val)
        else:
            x1.append(val)

    msg["depth"] = depth + 1
    msg["x"] = x0
    msg["position"] = 2 * position
    workflow.send(msg, SORT_QUEUE, src_tag=me, dest_tag="split_%03d_%05d" % (depth + 1, 2 * position))
    msg["x"] = x1
    msg["position"] = 2 * position + 1
    workflow.send(msg, SORT_QUEUE, src_tag=me, dest_tag="split_%03d_%05d" % (depth + 1, 2 * position + 1))


@workflow.handler
def merge_handler(msg):
    incident = msg["IncidentID"]
    depth = msg["depth"]
    position = msg["position"]
    x = msg["x"]

    if depth == 0:
        with open(msg["result_file"], "w") as f:
            json.dump(x, f)
        workflow.Complete(incident)
        return

    workflow.Persist.Put(incident, {"depth": depth, "position": position, "x": x})
    records = workflow.Persist.Get(incident)

    if position % 2 == 0:
        targetpos, x0, x1 = position + 1, x, None
    else:
        targetpos, x0, x1 = position - 1, None, x
    found = False
    for record in records:
        if record["depth"] == depth and record["position"] == targetpos:
            found = True
            if targetpos % 2 == 0:
                x0 = record["x"]
            else:
                x1 = record["x"]
    if not found:
        return  # the sibling is not there yet: it will find this part

    x = x0 + x1
    if not check(x):
        raise Exception("x out of order")
    msg["depth"] = depth - 1
    msg["position"] = position // 2
    msg["x"] = x
    me = "merge_%03d_%05d" % (depth, position // 2)
    workflow.send(msg, MERGE_QUEUE, src_tag=me, dest_tag="merge_%03d_%05d" % (depth - 1, position // 4))


def RegisterHandlers():
    workflow.RegisterHandler(quicksort_handler, SORT_QUEUE)
    workflow.RegisterHandler(merge_handler, MERGE_QUEUE)
