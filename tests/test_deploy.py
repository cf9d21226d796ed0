"""The deployment: Dockerfile, docker-compose.yml and the image's entry script.

There is no Docker engine in CI, so the lint tests read the files (the compose file against
the Compose Specification's schema, tests/data/), and the service-pass test runs the entry
script's roles directly, as the containers would, against RabbitMQ and PostgreSQL on 127.0.0.1.
"""
from __future__ import annotations

import base64
import copy
import gzip
import json
import os
import re
import secrets
import shlex
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jsonschema
import pytest
import yaml
from django.conf import settings

from incidents import conf
from incidents.processes import Worker, WorkerGroup

from .conftest import wait_until

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"
ENV_EXAMPLE = ROOT / "deploy" / "env.example"
SCHEMA = Path(__file__).resolve().parent / "data" / "compose-spec.json"
DOCS = [ROOT / "README.md", ROOT / "docs" / "CONFIGURATION.md", ROOT / "docs" / "DEPLOYMENT.md"]

RABBITMQ_DEFAULT_CONSUMER_TIMEOUT_MS = 30 * 60 * 1000
# Variables the third-party images read (their documentation on Docker Hub).
IMAGE_VARIABLES = {
    "postgres": {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"},
    "rabbitmq": {"RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS", "RABBITMQ_DEFAULT_VHOST"},
}
# Read by libraries rather than by name in this project: dj-database-url (settings.py) and
# gunicorn (its "workers" setting). Flower's FLOWER_* options are checked against Flower's own.
LIBRARY_VARIABLES = {"DATABASE_URL", "WEB_CONCURRENCY"}
SECRET_NAME = re.compile(r"PASSWORD|_PASS$|SECRET|TOKEN|_KEY$|AUTH")
INTERPOLATION = re.compile(r"\$\{[^}]*\}")
REQUIRED_FROM_ENV = re.compile(r"^\$\{[A-Z0-9_]+:\?[^}]+\}$")
# An optional secret (WORKFLOW_METRICS_TOKEN) may default to empty, never to a value.
FROM_ENV_OR_EMPTY = re.compile(r"^\$\{[A-Z0-9_]+(:\?[^}]+|:-)\}$")
URL_PASSWORD = re.compile(r"://[^/@:]+:(.+)@")


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def app_services() -> dict[str, dict[str, Any]]:
    """The services that run this project's image (they have a build section)."""
    return {name: s for name, s in services().items() if "build" in s}


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in (raw.strip() for raw in text.splitlines()) if line]


def entrypoint_roles() -> set[str]:
    return set(re.findall(r"^\s+([a-z]+)\)\s*$", ENTRYPOINT.read_text(), flags=re.MULTILINE))


# --- docker-compose.yml -----------------------------------------------------------------------

def test_the_compose_file_is_valid_under_the_compose_specification_schema():
    schema = json.loads(SCHEMA.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(compose())]
    assert errors == []
    # The schema is strict enough to notice a mistake (so the check above means something).
    broken = copy.deepcopy(compose())
    broken["services"]["web"]["healthcheck"]["intervall"] = "30s"
    assert not validator.is_valid(broken)


def test_every_long_running_service_has_a_healthcheck_and_one_shot_jobs_gate_the_others():
    all_services = services()
    completed_gates = {dependency for s in all_services.values()
                       for dependency, how in (s.get("depends_on") or {}).items()
                       if how["condition"] == "service_completed_successfully"}
    for name, service in all_services.items():
        if service.get("restart") == "no":  # a job such as migrate: it exits when done
            assert name in completed_gates, f"{name} runs once but nothing waits for it"
            continue
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name}: no healthcheck"


def test_services_wait_for_their_dependencies_to_be_healthy():
    all_services = services()
    for name, service in all_services.items():
        depends_on = service.get("depends_on") or {}
        assert isinstance(depends_on, dict), f"{name}: depends_on without conditions"
        for dependency, how in depends_on.items():
            assert dependency in all_services
            if how["condition"] == "service_healthy":
                assert "healthcheck" in all_services[dependency]
            else:
                assert how["condition"] == "service_completed_successfully", (name, dependency)
    for name in ("web", "worker"):
        assert {d for d, how in all_services[name]["depends_on"].items()
                if how["condition"] == "service_healthy"} == {"postgres", "rabbitmq", "redis"}


def test_published_ports_listen_on_loopback_only():
    published = 0
    for name, service in services().items():
        for port in service.get("ports", []):
            published += 1
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            assert host_ip == "127.0.0.1", f"{name} publishes {port!r} beyond this host"
    assert published >= 2  # the admin and Flower at least


def test_no_secret_is_written_in_the_compose_file():
    for name, service in services().items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key):
                # From the environment (${VAR:?...}, or ${VAR:-} if optional), with nothing but
                # separators around it (FLOWER_BASIC_AUTH is ${FLOWER_USER:-admin}:${FLOWER_PASSWORD:?...}).
                assert any(FROM_ENV_OR_EMPTY.match(i) for i in INTERPOLATION.findall(value)), (
                    f"{name}: {key} must come from ${{VAR:?message}} (or ${{VAR:-}} if optional)")
                assert not re.search(r"\w", INTERPOLATION.sub("", value)), f"{name}: {key} has a literal"
            match = URL_PASSWORD.search(value)
            if match:
                assert REQUIRED_FROM_ENV.match(match.group(1)), f"{name}: password in {key}"
    # No sample value from env.example found its way in.
    samples = {v for _, v in env_example().items() if len(v) >= 8}
    assert not [s for s in samples if s in COMPOSE.read_text()]


def env_example() -> dict[str, str]:
    pairs = [line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    return {key.strip(): value.strip() for key, value in pairs}


def strings(value: Any) -> Iterator[str]:
    """Every string value in a loaded YAML document (comments are gone by then)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def test_every_variable_compose_interpolates_is_in_env_example_and_secrets_have_no_sample():
    text = "\n".join(strings(compose()))
    used = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", text))
    required = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+):\?", text))
    example = env_example()
    assert used - set(example) == set()
    assert required >= {"DJANGO_SECRET_KEY", "POSTGRES_PASSWORD", "RABBITMQ_PASSWORD"}
    assert {name: example[name] for name in required} == {name: "" for name in required}


def names_the_project_reads() -> set[str]:
    sources = [ROOT / "wfproject" / "settings.py", ROOT / "celeryconfig.py",
               ROOT / "wfproject" / "celery.py", *sorted((ROOT / "incidents").rglob("*.py"))]
    pattern = re.compile(r"""(?:environ\.get\(|environ\[|_env_flag\(|_env_list\()\s*["']([A-Z0-9_]+)""")
    names = {name for source in sources for name in pattern.findall(source.read_text())}
    names |= {f"WORKFLOW_{name}" for name in conf.DEFAULTS}
    names |= set(re.findall(r"\$\{([A-Z0-9_]+)", ENTRYPOINT.read_text()))
    return names


def test_the_variables_given_to_the_apps_containers_are_read_and_documented():
    from flower.command import is_flower_envvar

    read = names_the_project_reads()
    documented = "\n".join(doc.read_text() for doc in DOCS if doc.exists())
    for name, service in services().items():
        for key in environment(service):
            if "build" in service:
                assert key in read or key in LIBRARY_VARIABLES or is_flower_envvar(key), (
                    f"{name}: nothing reads {key}")
                assert re.search(rf"\b{key}\b", documented), f"{key} is not documented"
            else:
                image = service["image"].split(":")[0]
                assert key in IMAGE_VARIABLES[image], f"{name}: {image} does not read {key}"


def test_third_party_images_are_pinned_and_the_apps_share_one_image():
    for name, service in services().items():
        if "build" not in service:
            tag = service["image"].rpartition(":")[2]
            assert re.match(r"\d+\.\d+", tag), f"{name}: pin {service['image']!r} to a version"
    assert len({s["image"] for s in app_services().values()}) == 1
    assert {s["command"][0] for s in app_services().values()} == {"web", "worker", "flower", "migrate"}
    assert {s["command"][0] for s in app_services().values()} <= entrypoint_roles()


def test_two_workers_share_the_scratch_and_results_volumes():
    worker = services()["worker"]
    assert worker["deploy"]["replicas"] == 2
    mounts = {target: source for source, target, *_ in (m.split(":") for m in worker["volumes"])}
    declared = set(compose()["volumes"])
    scratch = environment(worker)["WORKFLOW_SCRATCH_DIR"]
    assert mounts[scratch] in declared
    results = [target for target in mounts if target.endswith("/results")]
    assert results and mounts[results[0]] in declared


def test_rabbitmq_is_durable_and_its_consumer_timeout_is_above_the_default():
    rabbitmq = services()["rabbitmq"]
    assert rabbitmq["hostname"]  # a fixed node name, so a new container finds its data
    mounts = [m.split(":") for m in rabbitmq["volumes"]]
    durable = [target for source, target, *_ in mounts if source in compose()["volumes"]]
    assert durable == ["/var/lib/rabbitmq"]
    [conf_file] = [ROOT / source for source, target, *_ in mounts
                   if target.startswith("/etc/rabbitmq/conf.d/")]
    timeout = re.search(r"^consumer_timeout\s*=\s*(\d+)\s*$", conf_file.read_text(), re.MULTILINE)
    assert timeout and int(timeout.group(1)) > RABBITMQ_DEFAULT_CONSUMER_TIMEOUT_MS


# --- Dockerfile and the entry script ------------------------------------------------------------

def test_the_image_is_a_pinned_slim_python_that_runs_as_a_user_other_than_root():
    instructions = dockerfile_instructions()
    [base] = [args for op, args in instructions if op == "FROM"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", base), base
    ops = [op for op, _ in instructions]
    users = [(i, args.split(":")[0]) for i, (op, args) in enumerate(instructions) if op == "USER"]
    assert users, "no USER: the container would run as root"
    last_user_at, user = users[-1]
    assert user not in ("root", "0")
    assert last_user_at < ops.index("ENTRYPOINT") and last_user_at < ops.index("CMD")


def test_the_image_starts_the_entry_script_collects_static_files_and_defaults_to_production():
    instructions = dockerfile_instructions()
    args = {op: args for op, args in instructions if op in ("ENTRYPOINT", "CMD")}
    entry, cmd = json.loads(args["ENTRYPOINT"]), json.loads(args["CMD"])
    assert entry == ["/app/deploy/entrypoint.sh"] and cmd[0] in entrypoint_roles()
    run = " ".join(a for op, a in instructions if op == "RUN")
    assert "manage.py collectstatic" in run and "pip install -r requirements.txt" in run
    env = " ".join(a for op, a in instructions if op == "ENV")
    for setting in ("DJANGO_DEBUG=0", "DJANGO_STATIC_MANIFEST=1", "WF_LOG_FORMAT=json"):
        assert setting in env.split()
    assert not SECRET_NAME.search(" ".join(a.split("=")[0] for op, a in instructions
                                           if op == "ARG")), "a build argument named like a secret"
    assert "SECRET_KEY=" not in env and "PASSWORD" not in env


def test_the_entry_script_exists_is_executable_and_refuses_an_unknown_role():
    assert ENTRYPOINT.exists() and os.access(ENTRYPOINT, os.X_OK)
    assert ENTRYPOINT.read_text().startswith("#!/bin/sh\n")
    subprocess.run(["sh", "-n", str(ENTRYPOINT)], check=True, timeout=30)
    assert {"web", "worker", "flower", "migrate", "manage"} <= entrypoint_roles()
    done = subprocess.run([str(ENTRYPOINT), "no-such-role"], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 64 and "roles: web, worker" in done.stderr


def test_the_build_context_leaves_out_secrets_and_local_state():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".env", ".git", ".venv", "var"} <= ignored


# --- The entry commands on RabbitMQ + PostgreSQL (the service pass) -----------------------------

@dataclass
class Deployment:
    env: dict[str, str]
    database: dict[str, Any]
    web: str
    flower: str
    flower_auth: str
    worker_name: str
    worker_log: Path
    migrate_output: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, *, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    try:
        with _no_proxy.open(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()
    except OSError:
        return 0, {}, b""  # not listening yet


def entry(*args: str, env: dict[str, str]) -> str:
    """Run a role of the entry script to its end; its standard output."""
    done = subprocess.run([str(ENTRYPOINT), *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"entrypoint.sh {shlex.join(args)} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


def start(role: str, url: str, *, env: dict[str, str], logs: Path) -> Worker:
    """Start a serving role of the entry script; return once `url` answers 200."""
    log = logs / f"deploy-{role}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([str(ENTRYPOINT), role], env=env, cwd=ROOT, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    running = Worker(role, process, log)

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"entrypoint.sh {role} exited with {process.returncode}:\n{running.log_text()}")
        return http_get(url)[0] == 200

    try:
        wait_until(ready, timeout=90, what=f"entrypoint.sh {role} to answer {url}")
    except BaseException:
        running.stop()
        raise
    return running


def query(database: dict[str, Any], sql: str, *params: object) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(**database, connect_timeout=10) as connection:
        return connection.execute(sql, params).fetchall()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A fresh database migrated by `entrypoint.sh migrate`, then web, a worker and Flower
    started by the entry script with DEBUG off, as the containers run them."""
    import psycopg
    from psycopg import sql

    from wfproject.celery import app

    database_url = os.environ.get("DATABASE_URL", "")
    broker_url = app.conf.broker_url
    if not database_url.startswith("postgres") or not broker_url.startswith("amqp"):
        pytest.skip("the deployment test runs in the RabbitMQ + PostgreSQL pass "
                    "(make test-services: DATABASE_URL=postgres://..., CELERY_BROKER_URL=amqp://...)")
    # A database of its own, created empty, so `migrate` is seen to build the schema.
    parts = urlsplit(database_url)
    name = f"test_{parts.path.lstrip('/')}_deploy"
    server = {"host": parts.hostname, "port": parts.port or 5432, "user": parts.username,
              "password": parts.password or "", "dbname": parts.path.lstrip("/")}
    with psycopg.connect(**server, autocommit=True, connect_timeout=10) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    tmp = tmp_path_factory.mktemp("deploy")
    logs = Path(settings.VAR_DIR) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    web_port = flower_port = free_port()
    while flower_port == web_port:
        flower_port = free_port()
    flower_auth = f"operator:{secrets.token_hex(16)}"
    env = {key: value for key, value in os.environ.items()
           if key not in ("WORKFLOW_MODULES", "WF_FAILPOINTS", "DJANGO_SETTINGS_MODULE")}
    env.update({
        # What the Dockerfile and docker-compose.yml set, on loopback.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1", "DJANGO_STATIC_MANIFEST": "1",
        "DJANGO_STATIC_ROOT": str(tmp / "static"), "WF_VAR_DIR": str(tmp / "var"),
        "WF_LOG_FORMAT": "json", "WORKFLOW_SCRATCH_DIR": str(tmp / "incidents"),
        "DATABASE_URL": urlunsplit(parts._replace(path=f"/{name}")), "CELERY_BROKER_URL": broker_url,
        "WF_WEB_BIND": f"127.0.0.1:{web_port}",
        "FLOWER_ADDRESS": "127.0.0.1", "FLOWER_PORT": str(flower_port),
        "FLOWER_BASIC_AUTH": flower_auth,
        # gunicorn's control socket goes here rather than into ~/.gunicorn/.
        "XDG_RUNTIME_DIR": str(tmp),
    })
    if os.environ.get("WF_TEST_REDIS_URL"):
        env["WORKFLOW_REDIS_URL"] = os.environ["WF_TEST_REDIS_URL"]
    started: list[Worker] = []
    workers = WorkerGroup(env=env)
    try:
        migrate_output = entry("migrate", env=env)
        entry("manage", "collectstatic", "--noinput", "-v0", env=env)  # the image's build step
        web = f"http://127.0.0.1:{web_port}"
        started.append(start("web", f"{web}/health/", env=env, logs=logs))
        flower = f"http://127.0.0.1:{flower_port}"
        started.append(start("flower", f"{flower}/healthcheck", env=env, logs=logs))
        worker = workers.start(f"deploy-{secrets.token_hex(3)}", program=[str(ENTRYPOINT), "worker"],
                               timeout=120)
        yield Deployment(env=env, database={**server, "dbname": name}, web=web, flower=flower,
                         flower_auth=flower_auth, worker_name=f"{worker.name}@{socket.gethostname()}",
                         worker_log=worker.log, migrate_output=migrate_output)
    finally:
        workers.stop()
        for process in reversed(started):
            process.stop()
        with psycopg.connect(**server, autocommit=True, connect_timeout=10) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def json_lines(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # Celery's own lines (the banner, its loggers) are plain text
        if isinstance(record, dict):
            yield record


def flower_get(deployment: Deployment, path: str) -> Any:
    token = base64.b64encode(deployment.flower_auth.encode()).decode()
    status, _, body = http_get(deployment.flower + path, headers={"Authorization": f"Basic {token}"})
    assert status == 200, (path, status, body[:300])
    return json.loads(body)


@pytest.mark.services
def test_migrate_builds_the_schema_in_an_empty_database(deployment):
    assert "Applying incidents.0001_initial... OK" in deployment.migrate_output
    assert query(deployment.database, "SELECT count(*) FROM incidents_incident") == [(0,)]


@pytest.mark.services
def test_web_answers_health_and_serves_the_admin_with_its_static_files_with_debug_off(deployment):
    status, _, body = http_get(f"{deployment.web}/health/")
    checks = {"database": "ok", "broker": "ok"}
    if "WORKFLOW_REDIS_URL" in deployment.env:
        checks["redis"] = "ok"
    assert (status, json.loads(body)) == (200, {"status": "ok", "checks": checks})
    status, headers, body = http_get(f"{deployment.web}/admin/login/")
    assert status == 200
    # Secure cookies by default once DEBUG is off.
    assert "secure" in headers["Set-Cookie"].lower()
    # The page links the hashed copy collected at build; whitenoise serves it, compressed,
    # cacheable for ever (with DEBUG off nothing else would serve it).
    css = re.search(rb'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', body)
    assert css, body[:1000]
    status, headers, body = http_get(deployment.web + css.group(1).decode(),
                                     headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Type"].startswith("text/css")
    assert headers["Content-Encoding"] == "gzip" and "immutable" in headers["Cache-Control"]
    assert b"font-family" in gzip.decompress(body)


@pytest.mark.services
def test_a_worker_runs_an_incident_that_flower_shows_by_message_id_and_queue(deployment):
    # Flower receives this worker's events (its heartbeats) before the incident starts.
    wait_until(lambda: flower_get(deployment, "/api/workers?status=true").get(deployment.worker_name),
               timeout=60, what="Flower to see the worker's heartbeat")
    incident_id = entry("manage", "create_incident", "--name", "deployed", "--kind", "DUMMY_INCIDENT",
                        env=deployment.env).strip()

    def ended() -> object:
        rows = query(deployment.database,
                     "SELECT status FROM incidents_incident WHERE id = %s AND cleaned_at IS NOT NULL",
                     incident_id)
        return rows and rows[0][0]

    assert wait_until(ended, timeout=120, what="the incident to complete") == "COMPLETE"
    handled = query(deployment.database, "SELECT id::text, destination FROM incidents_messagelog "
                    "WHERE incident_id = %s AND status = 'COMPLETE'", incident_id)
    assert sorted(queue for _, queue in handled) == ["A_queue", "B_queue", "_Cleanup"]

    # The worker was started with task events on, and logs JSON lines naming the incident.
    log = deployment.worker_log.read_text(errors="replace")
    assert "task events: ON" in log
    assert any(r.get("incident_id") == incident_id and r.get("logger", "").startswith("incidents.")
               for r in json_lines(log))

    # Flower: the task id is the MessageID and the task's name says the queue.
    def flower_has_them() -> object:
        tasks = flower_get(deployment, "/api/tasks")
        return all(tasks.get(mid, {}).get("state") == "SUCCESS" for mid, _ in handled) and tasks

    tasks = wait_until(flower_has_them, timeout=60, what="Flower to list the handled tasks")
    assert isinstance(tasks, dict)
    for message_id, queue in handled:
        assert tasks[message_id]["name"] == f"workflow.{queue}"
        assert tasks[message_id]["worker"] == deployment.worker_name
    workers = flower_get(deployment, "/api/workers?refresh=true")
    assert "workflow.A_queue" in workers[deployment.worker_name]["registered"]
    # Without the password, Flower's API answers 401.
    assert http_get(f"{deployment.flower}/api/workers")[0] == 401


def test_the_systemd_unit_restarts_a_worker_whatever_killed_it():
    unit = (Path(__file__).resolve().parent.parent / "deploy" / "systemd"
            / "incident-worker@.service").read_text()
    settings = dict(line.split("=", 1) for line in unit.splitlines()
                    if "=" in line and not line.startswith("#"))
    assert settings["Restart"] == "always"  # also after the watchdog's exit 70
    assert settings["KillMode"] == "mixed"  # TERM to the main process, not to every child
    assert "celery -A wfproject worker" in settings["ExecStart"]
    assert int(settings["TimeoutStopSec"]) >= 60


def test_every_worker_in_compose_is_restarted_when_it_dies():
    workers = {name: s for name, s in services().items() if "worker" in name}
    assert workers
    for name, service in workers.items():
        assert service.get("restart") in ("always", "unless-stopped", "on-failure"), name
