"""Django settings: everything that differs between machines comes from the environment."""
from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("WF_VAR_DIR", BASE_DIR / "var")).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

_DEV_SECRET_KEY = "dev-only-insecure-key-set-DJANGO_SECRET_KEY-in-production"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", _DEV_SECRET_KEY)
DEBUG = os.environ.get("DJANGO_DEBUG", "1").lower() in ("1", "true", "yes")
if not DEBUG and SECRET_KEY == _DEV_SECRET_KEY:
    raise ImproperlyConfigured(
        "DJANGO_DEBUG is off but DJANGO_SECRET_KEY is not set; "
        "set DJANGO_SECRET_KEY to a long random value before running in production"
    )
ALLOWED_HOSTS = [h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h]
# DEBUG's error pages list settings and the environment (a foreign Host header is enough to
# get one, even on 127.0.0.1, by DNS rebinding): hide every URL's password there.
DEFAULT_EXCEPTION_REPORTER_FILTER = "wfproject.reporting.RedactingFilter"


def _env_flag(name: str, default: bool) -> bool:
    return os.environ.get(name, "1" if default else "0").strip().lower() in ("1", "true", "yes", "on")


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


# Production, behind a TLS-terminating proxy (docs/DEPLOYMENT.md). Session and CSRF cookies
# travel over HTTPS only once DEBUG is off; DJANGO_SECURE_COOKIES=0 lets an operator log in
# over plain http with DEBUG off (tests and `make serve` run with DEBUG on: no change there).
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = _env_flag("DJANGO_SECURE_COOKIES", not DEBUG)
# The proxy's origin(s) for the admin's POSTs, e.g. https://workflows.example.org.
CSRF_TRUSTED_ORIGINS = _env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
if _env_flag("DJANGO_TRUST_X_FORWARDED_PROTO", False):
    # Only behind a proxy that sets (and strips clients') X-Forwarded-Proto: a request is
    # HTTPS when the proxy says so.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "0"))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_results",
    "incidents",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
if not DEBUG:
    # gunicorn serves no files: whitenoise serves the collected STATIC_ROOT (with DEBUG on,
    # runserver serves them from the apps, as ever).
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "wfproject.urls"
WSGI_APPLICATION = "wfproject.wsgi.application"
# The Celery app (incidents/engine/celery_app.py finds it here; the engine does not import
# its project).
CELERY_APP = "wfproject.celery:app"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# DATABASE_URL=postgres://user:pass@127.0.0.1:5432/name in production; SQLite under var/ otherwise.
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'workflow.sqlite3'}",
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + synchronous=NORMAL lets several worker processes share the file at a useful speed;
    # IMMEDIATE transactions take the write lock up front, so writers queue instead of deadlocking.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT") or VAR_DIR / "static")
# DJANGO_STATIC_MANIFEST=1 (the image sets it, and collects static files at build): hashed,
# compressed copies served with far-future cache headers. A manifest storage refuses to
# render a page whose files were not collected, so without the flag (tests, `make serve`)
# Django's plain storage is kept.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
                    if _env_flag("DJANGO_STATIC_MANIFEST", False)
                    else "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Workflow modules loaded at start-up; each has a RegisterHandlers() function.
WORKFLOW_MODULES = [
    m.strip()
    for m in os.environ.get("WORKFLOW_MODULES",
                            "workflows.simple,workflows.quicksort,workflows.julia,"
                            "workflows.wildfire,workflows.batch").split(",")
    if m.strip()
]
WORKFLOW_REDIS_URL = os.environ.get("WORKFLOW_REDIS_URL", "")

# WF_LOG_FORMAT=json: one JSON object per line (production, log collectors); plain otherwise.
# Workflow lines (the engine's and handlers' in workflows/) carry incident, queue and message.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"workflow_context": {"()": "incidents.logs.WorkflowContext"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(processName)s %(name)s "
                            "[%(incident_id)s %(queue)s %(message_id)s]: %(message)s"},
        "json": {"()": "incidents.logs.JsonLines"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["workflow_context"],
                             "formatter": os.environ.get("WF_LOG_FORMAT", "plain")}},
    "loggers": {
        name: {"handlers": ["console"], "level": os.environ.get("WORKFLOW_LOG_LEVEL", "INFO"),
               "propagate": False}
        for name in ("incidents", "workflows")
    },
}
