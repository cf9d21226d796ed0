"""A smoke run of `make bench` with tiny sizes, so the benchmark does not rot. It checks the
suite runs every shape on both implementations and reports sane figures, not speed."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.report import table

ROOT = Path(__file__).resolve().parent.parent


def test_the_benchmark_suite_runs_every_shape_on_the_engine_and_on_raw_celery(tmp_path):
    output = tmp_path / "results.json"
    run = subprocess.run([sys.executable, "-m", "bench.suite", "--quick", "--repeat", "1",
                          "--configs", "embedded", "--output", str(output),
                          "--var-dir", str(tmp_path)],
                         cwd=ROOT, timeout=600, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-4000:]
    results = json.loads(output.read_text())
    result = results["configs"]["embedded"]
    for impl in ("engine", "raw"):
        for shape in ("chain_long", "chains", "quicksort", "scatter_gather"):
            figures = result[impl][shape]
            assert figures["messages"] > 0 and figures["per_second"]["min"] > 0, (impl, shape)
        assert result[impl]["latency_ms"]["samples"] == result["sizes"]["probes"]
    for impl in ("engine", "raw"):
        assert set(result["scaling"][impl]) == {f"{pool}_{n}" for pool in ("prefork", "threads")
                                                for n in (1, 2, 4)}
    # Both quicksorts were checked sorted by the suite (it fails otherwise).
    growth = result["growth"]
    assert growth["log_rows"] >= result["sizes"]["log_rows"]
    assert growth["chains_full_log"]["ms_per_message"] > 0
    assert result["memory"]["messages"] >= result["sizes"]["memory_messages"] - 50
    assert "hop chain 1 x" in table(results) and "memory:" in table(results)
