"""A smoke run of `make bench` with tiny sizes, so the benchmark does not rot. It checks the
suite runs every shape on the engine and on both Celery baselines and reports sane figures,
not speed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.report import table

ROOT = Path(__file__).resolve().parent.parent
IMPLEMENTATIONS = ("engine", "stock", "raw")  # stock Celery, Celery with the engine's settings


def test_the_benchmark_suite_runs_every_shape_on_the_engine_and_on_both_celery_baselines(
        tmp_path):
    output = tmp_path / "results.json"
    run = subprocess.run([sys.executable, "-m", "bench.suite", "--quick", "--repeat", "1",
                          "--configs", "embedded", "--output", str(output),
                          "--var-dir", str(tmp_path)],
                         cwd=ROOT, timeout=600, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-4000:]
    results = json.loads(output.read_text())
    result = results["configs"]["embedded"]
    for impl in IMPLEMENTATIONS:
        for shape in ("chain_long", "chains", "quicksort", "scatter_gather"):
            figures = result[impl][shape]
            assert figures["messages"] > 0 and figures["per_second"]["min"] > 0, (impl, shape)
        assert result[impl]["latency_ms"]["samples"] == result["sizes"]["probes"]
        assert set(result["scaling"][impl]) == {f"{pool}_{n}" for pool in ("prefork", "threads")
                                                for n in (1, 2, 4)}
    # All three quicksorts were checked sorted by the suite (it fails otherwise).
    growth = result["growth"]
    assert growth["log_rows"] >= result["sizes"]["log_rows"]
    assert growth["chains_full_log"]["ms_per_message"] > 0
    assert result["memory"]["messages"] >= result["sizes"]["memory_messages"] - 50
    timers = result["timers"]
    assert timers["chains"]["pending"]["messages"] == timers["chains"]["none"]["messages"] > 0
    assert timers["handled_late_ms"]["min"] >= timers["published_late_ms"]["min"] >= 0
    priority = result["priority"]
    assert 0 < priority["waiting"]["min"] <= priority["backlog"]
    assert 0 <= priority["overtaken"]["max"] <= priority["waiting"]["max"]
    assert min(priority[f"{run}_seconds"]["min"] for run in ("idle", "urgent", "normal")) > 0
    assert priority["urgent_over_idle"] > 0
    printed = table(results)
    assert "hop chain 1 x" in printed and "raw-own" in printed and "memory:" in printed
    assert "timers pending" in printed and "urgent chain behind" in printed


def test_the_table_of_a_chains_only_run_shows_the_hop_chains_and_both_cost_ratios():
    def figures(per_second: float) -> dict:
        return {"per_second": {"median": per_second, "min": per_second, "max": per_second},
                "ms_per_message": 1000 / per_second, "messages": 100}

    speeds = {"engine": 500.0, "stock": 2000.0, "raw": 1000.0}
    result = {"sizes": {"long_chain": 30, "chains": 4, "chain_hops": 10}, "repeat": 1,
              "machine": {"broker": "wffs:///", "database": "sqlite3", "locks": "database",
                          "cores": 2, "memory_mb": 1024},
              **{impl: {"chain_long": figures(speed), "chains": figures(speed)}
                 for impl, speed in speeds.items()}}
    printed = table({"command": "python -m bench.suite --phases chains", "date": "today",
                     "configs": {"embedded": result}})
    [chain_row] = [line for line in printed.splitlines() if line.startswith("hop chain 1 x 30")]
    assert chain_row.split()[-2:] == ["4.00x", "2.00x"]  # engine / stock, engine / raw-own
    assert "hop chains 4 x 10" in printed and "quicksort" not in printed
    assert max(len(line) for line in printed.splitlines() if not line.startswith("==")) <= 100


def test_the_hop_profile_times_each_step_of_a_delivered_hop(tmp_path):
    env = {**os.environ, "WF_VAR_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    run = subprocess.run([sys.executable, "-m", "bench.profile_hop", "--hops", "20"], env=env,
                         cwd=ROOT, timeout=300, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-4000:]
    lines = run.stdout.splitlines()
    assert lines[0].startswith("sqlite database, wffs broker:") and "ms per delivered hop" in lines[0]
    steps = {line.split()[2] for line in lines[1:]}
    assert {"lookup", "send", "finish", "insert", "publish"} <= steps
