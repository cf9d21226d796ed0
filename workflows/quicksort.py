"""Quicksort as a workflow: splits fan out, an atomic merge fans their results back in.

A node is named by its path from the root ("r", "rL", "rLM", ...). Splitting a node sends its
less and greater parts on to be split (or, when small, sorted straight away) and its pivot
run to the merge. The merge keeps each finished node in Persist, keyed by its parent; when
the three children of a node (L, M, R) are in, it sends the joined list up as the node's
result. The root's
result goes to the done handler, which logs it and completes the incident.
"""
from incidents import workflow

KIND = "QUICKSORT"
ENTRY_QUEUE = "quicksort_split"
LEAF_SIZE = 16


@workflow.handler
def start_handler(message):
    """Start a sort from the incident's parameters: {"numbers": [...]}, or {"size": n,
    "seed": s} for n random numbers (what the admin's start form gives)."""
    parameters = message.get("parameters") or {}
    numbers = parameters.get("numbers")
    if numbers is None:
        numbers = random_numbers(int(parameters.get("size", 1000)), parameters.get("seed"))
    start(message["IncidentID"], numbers)


def random_numbers(size, seed=None):
    import random

    rng = random.Random(seed)
    return [rng.randint(0, max(1, size // 2)) for _ in range(size)]


@workflow.handler
def split_handler(message):
    node, numbers = message["node"], message["numbers"]
    pivot = sorted((numbers[0], numbers[len(numbers) // 2], numbers[-1]))[1]
    parts = {
        "L": [n for n in numbers if n < pivot],
        "R": [n for n in numbers if n > pivot],
    }
    _send_merge(message, node + "M", [n for n in numbers if n == pivot])
    for side, part in parts.items():
        child = node + side
        if len(part) <= LEAF_SIZE:
            _send_merge(message, child, sorted(part))
        else:
            workflow.send(message={"IncidentID": message["IncidentID"], "node": child,
                                   "numbers": part},
                          queue=ENTRY_QUEUE, src_tag=f"split {node}", dest_tag=f"split {child}")


@workflow.atomic
@workflow.handler
def merge_handler(message):
    incident_id, node = message["IncidentID"], message["node"]
    if node == "r":
        workflow.send(message={"IncidentID": incident_id, "sorted": message["sorted"]},
                      queue="quicksort_done", src_tag="merge r")
        return
    parent = node[:-1]
    # Filed under the parent, so a merge reads its siblings, not every finished node.
    workflow.Persist.Put(incident_id, {"node": node, "sorted": message["sorted"]}, key=parent)
    done = {p["node"]: p["sorted"] for p in workflow.Persist.Get(incident_id, key=parent)}
    if all(parent + side in done for side in "LMR"):
        _send_merge(message, parent, done[parent + "L"] + done[parent + "M"] + done[parent + "R"],
                    src_tag=f"merge {node}")


@workflow.handler
def done_handler(message):
    # The result outlives the incident (CleanPersist=False) for whoever asked for the sort.
    workflow.Persist.Put(message["IncidentID"], message["sorted"], key="result")
    workflow.Complete(message["IncidentID"], CleanPersist=False)


def _send_merge(message, node, values, src_tag=None):
    workflow.send(message={"IncidentID": message["IncidentID"], "node": node, "sorted": values},
                  queue="quicksort_merge",
                  src_tag=src_tag or f"split {node[:-1] or node}", dest_tag=f"merge {node}")


def start(incident_id, numbers):
    """Send the first message of a sort; the caller flushes."""
    if len(numbers) <= LEAF_SIZE:
        _send_merge({"IncidentID": incident_id}, "r", sorted(numbers), src_tag="Start")
    else:
        workflow.send(message={"IncidentID": incident_id, "node": "r", "numbers": list(numbers)},
                      queue=ENTRY_QUEUE, dest_tag="split r")


def sorted_result(incident_id):
    """The sorted list the done handler received, or None if it has not run."""
    found = workflow.Persist.Get(incident_id, ignoreOriginator=True, key="result")
    return found[0] if found else None


def RegisterHandlers():
    workflow.RegisterKind(KIND, queue="quicksort_start",
                          description='Sort numbers: parameters {"size": 1000, "seed": 1} '
                                      'or {"numbers": [3, 1, 2]}')
    workflow.RegisterHandler(handler=start_handler, queue="quicksort_start")
    workflow.RegisterHandler(handler=split_handler, queue=ENTRY_QUEUE)
    workflow.RegisterHandler(handler=merge_handler, queue="quicksort_merge")
    workflow.RegisterHandler(handler=done_handler, queue="quicksort_done")


def start_demo(size=1000, seed=None):
    """`make demo`: declare an incident and sort `size` random numbers (duplicates included)."""
    numbers = random_numbers(size, seed)
    incident_id = workflow.CreateIncident(name=f"quicksort of {size} numbers", kind=KIND,
                                          parameters={"size": size, "seed": seed})
    start(incident_id, numbers)
    workflow.FlushMessages()
    return incident_id, numbers


def check_demo(incident_id, numbers):
    """Return a one-line verdict on the sort; raise ValueError if the result is wrong."""
    result = sorted_result(incident_id)
    if result != sorted(numbers):
        raise ValueError(f"quicksort result is wrong or missing: {str(result)[:200]}")
    return f"sorted {len(result)} numbers correctly ({result[:3]} ... {result[-3:]})"
