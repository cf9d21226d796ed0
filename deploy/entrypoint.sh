#!/bin/sh
# The image's entry point: one image, a role per container (docker-compose.yml, docs/DEPLOYMENT.md).
#
#   web            the admin (the operator's console) under gunicorn on $WF_WEB_BIND
#                  (default 0.0.0.0:8000); WF_MIGRATE_ON_START=1 migrates first
#   worker [opts]  celery -A wfproject worker -E [opts]: every registered queue, task events on
#   flower [opts]  celery -A wfproject flower [opts] (FLOWER_PORT, FLOWER_BASIC_AUTH, ...)
#   migrate        python manage.py migrate --noinput
#   manage <args>  python manage.py <args>, e.g. `manage createsuperuser`
#   <command>      anything else runs as given (e.g. `sh`)
#
# Extra options after a role go to the program it starts. Run outside the image too (the test
# suite does): `python` must then be the project's interpreter (e.g. an activated venv).
set -eu

cd "$(dirname "$0")/.."

role="${1:-web}"
if [ "$#" -gt 0 ]; then shift; fi

case "$role" in
  web)
    if [ "${WF_MIGRATE_ON_START:-0}" = 1 ]; then
      python manage.py migrate --noinput
    fi
    # Worker processes: gunicorn reads WEB_CONCURRENCY (default 1); GUNICORN_CMD_ARGS adds options.
    exec python -m gunicorn wfproject.wsgi:application \
      --bind "${WF_WEB_BIND:-0.0.0.0:8000}" \
      --worker-tmp-dir /dev/shm \
      --access-logfile - \
      "$@"
    ;;
  worker)
    # -E: task events for Flower (celeryconfig.py keeps them off elsewhere).
    exec python -m celery -A wfproject worker -E -l INFO "$@"
    ;;
  flower)
    exec python -m celery -A wfproject flower "$@"
    ;;
  migrate)
    exec python manage.py migrate --noinput "$@"
    ;;
  manage)
    exec python manage.py "$@"
    ;;
  *)
    if ! command -v "$role" >/dev/null 2>&1; then
      echo "entrypoint: unknown role or command '$role'; roles: web, worker, flower, migrate, manage <args>" >&2
      exit 64
    fi
    exec "$role" "$@"
    ;;
esac
