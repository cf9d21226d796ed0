from incidents import workflow
from incidents.models import Incident, MessageLog
from incidents.testing import run_until_idle
from workflows import quicksort


def test_simple(db, broker):
    iid = workflow.CreateIncident(name="x", kind="DUMMY")
    workflow.send(queue="A_queue", message={"IncidentID": iid})
    workflow.FlushMessages()
    n = run_until_idle()
    print(n, list(MessageLog.objects.values_list("destination", "status")))
    assert Incident.objects.get(pk=iid).status == "COMPLETE"


def test_qs(db, broker):
    import random
    nums = [random.randint(0, 100) for _ in range(300)]
    iid = workflow.CreateIncident(name="x", kind="QUICKSORT")
    quicksort.start(iid, nums)
    workflow.FlushMessages()
    n = run_until_idle()
    print(n)
    assert quicksort.sorted_result(iid) == sorted(nums)
    assert Incident.objects.get(pk=iid).status == "COMPLETE"
