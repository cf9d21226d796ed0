# One image for every role: the admin (web), workers, Flower and migrations.
#   docker build -t incident-workflows .
#   docker run --rm incident-workflows manage check      # roles: deploy/entrypoint.sh
# Production by default: DEBUG off (so DJANGO_SECRET_KEY is required), JSON-lines logs.
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    DJANGO_SETTINGS_MODULE=wfproject.settings \
    DJANGO_DEBUG=0 \
    DJANGO_STATIC_ROOT=/app/staticfiles \
    DJANGO_STATIC_MANIFEST=1 \
    WF_VAR_DIR=/var/lib/wf \
    WF_LOG_FORMAT=json

# Graphviz's `dot` draws the incident graphs in the admin.
RUN apt-get update \
    && apt-get install -y --no-install-recommends graphviz \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 wf \
    && useradd --system --uid 10001 --gid wf --create-home --home-dir /home/wf \
       --shell /usr/sbin/nologin wf

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

# The code stays owned by root: the app cannot change itself.
COPY . .

# Static files, hashed and compressed, for whitenoise. The key only lets settings load here
# (DEBUG is off); the real one comes from the environment at run time. `check` fails the
# build on a workflow module that does not load (incidents.E001).
# The scratch and results directories exist in the image, owned by the app's user, so named
# volumes mounted on them start with that owner.
RUN DJANGO_SECRET_KEY=build-only-not-a-secret python manage.py collectstatic --noinput -v0 \
    && DJANGO_SECRET_KEY=build-only-not-a-secret python manage.py check \
    && chmod 0755 deploy/entrypoint.sh \
    && mkdir -p /var/lib/wf/incidents /var/lib/wf/results \
    && chown -R wf:wf /var/lib/wf

USER wf
EXPOSE 8000 5555
ENTRYPOINT ["/app/deploy/entrypoint.sh"]
CMD ["web"]
