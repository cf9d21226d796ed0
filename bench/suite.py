"""`make bench`: the engine against stock Celery and against Celery with the engine's
settings, on the embedded default, on RabbitMQ + SQLite and on RabbitMQ + PostgreSQL + Redis
locks; prints a table and writes bench/results.json.

    python -m bench.suite                      # all configurations, full sizes (1.5 h+)
    python -m bench.suite --quick --repeat 1   # a smoke run with tiny sizes
    python -m bench.suite --configs embedded --phases shapes
    python -m bench.suite --phases chains --repeat 3   # the per-hop cost, a few minutes
    python -m bench.suite --phases chains,timers       # and the same with 10,000 timers pending
    python -m bench.suite --phases priority            # an urgent chain behind a backlog

Each configuration runs in a fresh process (bench.measure) on a fresh database: SQLite under
var/bench/<config>/, or database `wf_bench` next to WF_TEST_POSTGRES_URL's; bench.measure
empties the benchmark's RabbitMQ queues before it starts.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench.report import table
from tests import stack

ROOT = Path(__file__).resolve().parent.parent
# The services each configuration uses (tests/stack.py finds them) and the variable that
# points the benchmark at each; without them, the embedded default (SQLite, wffs://,
# locks in the database).
CONFIGS = {
    "embedded": (),
    "rabbitmq-sqlite": ("WF_TEST_RABBITMQ_URL",),
    "services": ("WF_TEST_RABBITMQ_URL", "WF_TEST_POSTGRES_URL", "WF_TEST_REDIS_URL"),
}
SETTING = {"WF_TEST_RABBITMQ_URL": "CELERY_BROKER_URL", "WF_TEST_POSTGRES_URL": "DATABASE_URL",
           "WF_TEST_REDIS_URL": "WORKFLOW_REDIS_URL"}
# WF_BENCH_DATABASE: another name, so that two benchmarks on one server do not drop each other's.
BENCH_DATABASE = os.environ.get("WF_BENCH_DATABASE", "wf_bench")


def production_env(var_dir: Path) -> dict[str, str]:
    """As deployed: DEBUG off (Django's query log costs ~10% per message), for the engine's
    and the raw workers alike."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "WORKFLOW_REDIS_URL",
                        "WORKFLOW_MODULES")}  # bench.measure chooses its own
    return {**env, "WF_VAR_DIR": str(var_dir), "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(32)}


def config_env(config: str, var_dir: Path) -> dict[str, str] | None:
    """The environment of `config` on a fresh database; None if a service it needs is not
    reachable."""
    found = stack.available()
    if not all(name in found for name in CONFIGS[config]):
        return None
    env = production_env(var_dir)
    for name in CONFIGS[config]:
        url = found[name]
        env[SETTING[name]] = fresh_database(url) if name == "WF_TEST_POSTGRES_URL" else url
    return env


def fresh_database(url: str) -> str:
    """Drop and create BENCH_DATABASE on the server of `url`; return its URL."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DATABASE}")
    return urlunsplit(urlsplit(url)._replace(path=f"/{BENCH_DATABASE}"))


def measure(config: str, args: argparse.Namespace) -> dict[str, Any] | None:
    var_dir = Path(args.var_dir) / config
    shutil.rmtree(var_dir, ignore_errors=True)
    env = config_env(config, var_dir)
    if env is None:
        print(f"bench: SKIPPED {config}: it needs {', '.join(CONFIGS[config])} reachable "
              "(start the services with `make services`, or set the URLs)", file=sys.stderr)
        return None
    phases = args.phases.split(",")
    measure_phases = ",".join(p for p in phases if p and p not in ("timers", "priority"))
    started = time.monotonic()
    result: dict[str, Any] = {}
    if measure_phases:
        result = run_script(config, "bench.measure", var_dir, env, args,
                            "--phases", measure_phases)
    if "timers" in phases:
        timers = run_script(config, "bench.timers", var_dir, env, args)
        result = {**timers, **result, "timers": timers["timers"]}
    if "priority" in phases:
        priority = run_script(config, "bench.priority", var_dir, env, args)
        result = {**priority, **result, "priority": priority["priority"]}
    result["wall_seconds"] = time.monotonic() - started
    return result


def run_script(config: str, module: str, var_dir: Path, env: dict[str, str],
               args: argparse.Namespace, *options: str) -> dict[str, Any]:
    """Run a measuring module (bench.measure, bench.timers, ...) on `config`; its results."""
    output = var_dir / f"{module}.json"
    command = [sys.executable, "-m", module, "--output", str(output),
               "--repeat", str(args.repeat), *options]
    if args.quick:
        command.append("--quick")
    print(f"bench: measuring {config} ({' '.join(command[2:])})", file=sys.stderr, flush=True)
    subprocess.run(command, env=env, cwd=ROOT, check=True)
    return dict(json.loads(output.read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each shape")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"comma-separated, from {', '.join(CONFIGS)}")
    parser.add_argument("--phases", default="shapes,scaling,memory,growth,timers,priority",
                        help="comma-separated, from shapes, chains (the hop chains of shapes "
                             "alone), scaling, memory, growth, timers (bench/timers.py), "
                             "priority (bench/priority.py)")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results.json"))
    parser.add_argument("--var-dir", default=str(ROOT / "var" / "bench"),
                        help="databases, broker folders and worker logs of the runs")
    args = parser.parse_args()
    configs = [c for c in args.configs.split(",") if c]
    if set(configs) - set(CONFIGS):
        parser.error(f"--configs: choose from {', '.join(CONFIGS)}")
    measured = {config: measure(config, args) for config in configs}
    results = {"command": " ".join(["python -m bench.suite", *sys.argv[1:]]),
               "date": time.strftime("%Y-%m-%d %H:%M:%S"),
               "configs": {config: r for config, r in measured.items() if r is not None}}
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
