"""Django set up for a benchmark script, with the benchmark's handlers: import it first.

Before Django is set up, so sends from the script declare the queues as the workers do. (An
empty WORKFLOW_MODULES, as incidents.standalone leaves in a stand-alone script, means unset.)
"""
from __future__ import annotations

import os

if not os.environ.get("WORKFLOW_MODULES"):
    os.environ["WORKFLOW_MODULES"] = "bench.handlers,workflows.quicksort"

import incidents.standalone  # noqa: F401  (sets Django up)

WORKFLOW_MODULES = os.environ["WORKFLOW_MODULES"]
