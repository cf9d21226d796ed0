# Two commands do all set-up: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
WORKFLOW ?= quicksort
SIZE ?= 1000
STACK_ENV = eval "$$($(PY) -m tests.stack env)"

.PHONY: install demo serve test lint test-embedded test-services bench soak storm services image clean

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements-dev.txt -e .
	touch $@

install: $(VENV)/.installed

## Run a real workflow on the embedded default (SQLite + filesystem broker under var/).
demo: install
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py run_demo --workflow $(WORKFLOW) --size $(SIZE)

## The admin at http://127.0.0.1:8000/admin/ with two workers, on the embedded default.
## A superuser is created from DJANGO_SUPERUSER_USERNAME / DJANGO_SUPERUSER_PASSWORD if set.
serve: install
	$(PY) manage.py migrate --noinput -v0
	@if [ -n "$$DJANGO_SUPERUSER_USERNAME" ] && [ -n "$$DJANGO_SUPERUSER_PASSWORD" ]; then \
	  $(PY) manage.py createsuperuser --noinput --email "$${DJANGO_SUPERUSER_EMAIL:-admin@localhost}" \
	    >/dev/null 2>&1 && echo "created superuser $$DJANGO_SUPERUSER_USERNAME" || true; \
	else \
	  echo "No superuser from the environment: set DJANGO_SUPERUSER_USERNAME and"; \
	  echo "DJANGO_SUPERUSER_PASSWORD, or run: $(PY) manage.py createsuperuser"; \
	fi
	$(PY) manage.py serve

## The whole suite: lint, types, the embedded pass, then the RabbitMQ + PostgreSQL pass.
test: lint test-embedded test-services

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test-embedded: install
	rm -rf var/test-embedded
	$(STACK_ENV); WF_VAR_DIR=$(CURDIR)/var/test-embedded $(VENV)/bin/pytest -m "not services"

test-services: install
	@$(STACK_ENV); \
	if [ -n "$$WF_TEST_RABBITMQ_URL" ] && [ -n "$$WF_TEST_POSTGRES_URL" ]; then \
	  rm -rf var/test-services; \
	  DATABASE_URL=$$WF_TEST_POSTGRES_URL CELERY_BROKER_URL=$$WF_TEST_RABBITMQ_URL \
	  WF_VAR_DIR=$(CURDIR)/var/test-services $(VENV)/bin/pytest -m "e2e or services or stacks"; \
	elif [ "$$WF_REQUIRE_SERVICES" = 1 ]; then \
	  $(PY) -m tests.stack check; \
	else \
	  echo "SKIPPED the RabbitMQ + PostgreSQL pass: not both usable (reasons above: none"; \
	  echo "listening, or not the project's, refusing its login); start the project's with"; \
	  echo "  sudo .ci/services   (needs rabbitmq-server, postgresql, redis-server)"; \
	fi

## The benchmark against stock Celery and Celery with the engine's settings (~1 h; not part of
## `make test`): the embedded default, RabbitMQ + SQLite, then RabbitMQ + PostgreSQL + Redis,
## started on loopback when run as root with the Debian packages installed. Prints a table,
## writes bench/results.json. BENCH_ARGS="--phases chains" (~10 min): the hop chains only;
## BENCH_ARGS="--quick --repeat 1": a smoke run.
bench: install
	@if [ "$$(id -u)" = 0 ] && command -v rabbitmq-server >/dev/null; then .ci/services >/dev/null; fi
	$(PY) -m bench.suite $(BENCH_ARGS)

## The long soak (1,000 incidents x 200 hops) on the configured stack; see docs/RELIABILITY.md.
soak: install
	$(PY) -m bench.soak --incidents $${INCIDENTS:-1000} --hops $${HOPS:-200} --workers 2

## SIGKILL storms (~3 min each) on the configured stack: six incidents while pool processes and
## whole workers are killed every 2-3 s for 2 minutes; see docs/RELIABILITY.md.
storm: install
	$(PY) -m bench.storm --runs $${RUNS:-10}

## Start RabbitMQ, PostgreSQL and Redis on loopback (root; Debian packages installed).
services:
	.ci/services >/dev/null

## The deployment image (needs Docker; see README "Deployment" and docs/DEPLOYMENT.md).
image:
	docker build -t incident-workflows:$${WF_IMAGE_TAG:-latest} .

clean:
	rm -rf var/ $(VENV) *.egg-info
