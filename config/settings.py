"""pluriharms settings: one file, driven by the environment, runnable with nothing set.

With nothing set: SQLite in ./var, files in ./var/media, and Celery on kombu's filesystem
transport (./var/celery), so jobs run in a separate worker process without Redis.
"""

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# Empty counts as unset (.env.example lists these with no value; an empty path would be the working folder).
VAR_DIR = Path(os.environ.get("PLURIHARMS_VAR_DIR") or BASE_DIR / "var")

DEBUG = env_bool("DEBUG", False)
# Tests (pytest sets PYTEST_VERSION) and `make demo` (PLURIHARMS_DEV=1) may use throwaway keys. A real
# deployment must bring its own: a public fallback key would let anyone forge sessions and re-identify
# participants from their recruitment-id hashes. Without them the site refuses to serve (config.checks:
# the WSGI application that gunicorn and runserver load, and the Celery worker and beat, refuse to start;
# `check --deploy` reports it); commands that serve nothing (makemigrations, collectstatic) still run,
# on random keys that live as long as the process.
DEV_KEYS_ALLOWED = DEBUG or env_bool("PLURIHARMS_DEV", False) or "PYTEST_VERSION" in os.environ
SECRET_KEY = os.environ.get("SECRET_KEY", "")
# Keyed hash for recruitment ids (Prolific PIDs); separate from SECRET_KEY so that rotating one does
# not orphan every annotator, and so that a leaked SECRET_KEY alone does not re-identify anyone.
RECRUITMENT_HASH_KEY = os.environ.get("RECRUITMENT_HASH_KEY", "")
KEYS_PROBLEM = ""
if DEV_KEYS_ALLOWED:
    SECRET_KEY = SECRET_KEY or "insecure-development-key-change-me-" + "x" * 20
    RECRUITMENT_HASH_KEY = RECRUITMENT_HASH_KEY or "insecure-development-recruitment-key"
elif not SECRET_KEY or not RECRUITMENT_HASH_KEY:
    KEYS_PROBLEM = (
        "SECRET_KEY and RECRUITMENT_HASH_KEY must both be set when DEBUG is off "
        "(set PLURIHARMS_DEV=1 for a local, non-public run with throwaway keys)."
    )
    SECRET_KEY = SECRET_KEY or secrets.token_urlsafe(50)
    RECRUITMENT_HASH_KEY = RECRUITMENT_HASH_KEY or secrets.token_urlsafe(50)
elif SECRET_KEY == RECRUITMENT_HASH_KEY:
    KEYS_PROBLEM = "RECRUITMENT_HASH_KEY must differ from SECRET_KEY"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "django_filters",
    "django_htmx",
    "django_tables2",
    "axes",
    "csp",
    "drf_spectacular_sidecar",
    "jobs",
    "annotation",
    "benchmark",
]

MIDDLEWARE = [
    "config.middleware.RequestIdMiddleware",  # first: every log line of a request, even a refused one, has its id
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.RequestBodyLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "config.middleware.CSPMiddleware",  # django-csp's, the policy built once (config/middleware.py)
    # Last, as django-axes asks: it turns a locked-out login into its lockout answer.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # First, so that a locked-out user or address is refused before the password is even checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        # Persistent connections: a new PostgreSQL connection per request costs more than the request.
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
# Health checks (above) only for connections idle longer than this many seconds (config/postgresql/base.py).
CONN_HEALTH_CHECK_IDLE = float(os.environ.get("CONN_HEALTH_CHECK_IDLE", "1"))
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["ENGINE"] = "config.postgresql"
if DATABASES["default"]["ENGINE"] == "config.postgresql" and env_bool("PG_PREPARED_STATEMENTS", True):
    # The rating loop's statements are prepared once per connection (annotation/rows.py: fetchone), which
    # saves PostgreSQL parsing and planning them per rating. Only cursors that bind on the server are
    # prepared: Django's own bind on the client and never are. Set PG_PREPARED_STATEMENTS=0 behind a pooler
    # that cannot keep prepared statements (PgBouncer's transaction mode before 1.21).
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("prepare_threshold", 5)
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Workers and the web process share the file: wait for locks instead of failing at once, and take
    # the write lock when a transaction starts so that check-then-write services stay serialized.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
# A PostgreSQL replica of DATABASE_URL (streaming replication): exports and analyses read from it, every write
# and every other read goes to the primary (config/db_router.py, docs/scaling.md). Tests point the alias at the
# test database (TEST MIRROR), so the suite needs no replica.
DATABASE_REPLICA_URL = os.environ.get("DATABASE_REPLICA_URL", "")
if DATABASE_REPLICA_URL:
    _replica = dj_database_url.parse(
        DATABASE_REPLICA_URL, conn_max_age=DATABASES["default"]["CONN_MAX_AGE"], conn_health_checks=True
    )
    if _replica["ENGINE"] != "django.db.backends.postgresql" or DATABASES["default"]["ENGINE"] != "config.postgresql":
        raise ImproperlyConfigured("DATABASE_REPLICA_URL needs PostgreSQL URLs in both it and DATABASE_URL")
    _replica["ENGINE"] = "config.postgresql"
    _replica["OPTIONS"] = {**DATABASES["default"].get("OPTIONS", {}), **_replica.get("OPTIONS", {})}
    _replica["TEST"] = {"MIRROR": "default"}
    DATABASES["replica"] = _replica
DATABASE_ROUTERS = ["config.db_router.ReplicaRouter"]
# How long a job waits for the replica to have its own row (everything committed before it) before it reads
# from the primary instead.
DATABASE_REPLICA_WAIT = float(os.environ.get("DATABASE_REPLICA_WAIT", "5"))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Production images run collectstatic and set STATIC_MANIFEST=1 (hashed, compressed files); without
# it WhiteNoise serves straight from the source folders, so a clone works with no build step.
STATIC_MANIFEST = env_bool("STATIC_MANIFEST", False)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on every start without it
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT") or VAR_DIR / "media")

# Sessions live in the database, so logout and a password change revoke them (a copied cookie dies
# with them). With Redis, reads come from the cache in front of the table (cached_db: every write goes
# to both, a read that misses falls back to the table), which spares the rating loop a database read
# per rating (bench/load.py). Annotator sessions hold ids only, never recruitment ids.
SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = int(os.environ.get("SESSION_COOKIE_AGE", str(14 * 24 * 3600)))

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "annotation:study_list"
LOGOUT_REDIRECT_URL = "login"

# Security: strict when DEBUG is off (python manage.py check --deploy is clean with production values).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG and SECURE_SSL_REDIRECT)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_PROXY", False) else None
X_FRAME_OPTIONS = "DENY"
# A load balancer probes over plain HTTP inside the network: no redirect to HTTPS for the health checks.
SECURE_REDIRECT_EXEMPT = [r"^healthz(/live)?$"]

# The largest request body accepted (an upload is at most 20 MB; the form around it is small). Checked
# before anything reads the body; a proxy in front should set the same limit.
MAX_REQUEST_BYTES = int(os.environ.get("MAX_REQUEST_BYTES", str(21 * 2**20)))

# Content Security Policy (django-csp): scripts, styles, images and connections from this site only,
# no inline script, no eval. Plotly sets style attributes on the elements it draws, so inline styles
# are allowed; nothing a page needs comes from another host.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:", "blob:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        "base-uri": ["'self'"],
        "object-src": ["'none'"],
    },
}

# Login throttling (django-axes): after AXES_FAILURE_LIMIT failures for one username from one address,
# that pair is locked out for AXES_COOLOFF_MINUTES; a success resets the count.
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = int(os.environ.get("AXES_COOLOFF_MINUTES", "15")) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_IPWARE_PROXY_COUNT = 1 if env_bool("BEHIND_PROXY", False) else 0

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "config.errors.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "pluriharms API",
    "DESCRIPTION": "Studies, prompts, ratings, exports and analysis jobs.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from drf-spectacular-sidecar's static files, never from a CDN; the docs view is the split
    # one (config/urls.py), whose initializer is a script file, so the page runs under the CSP.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # Request bodies get their own components: a file field is binary (not a URL), a required text field
    # has minLength 1, read-only fields are left out (tests/test_api_fuzz.py sends what the schema says).
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.openapi.body_error_responses",
    ],
    "ENUM_NAME_OVERRIDES": {
        "UploadKindEnum": "annotation.models.Upload.Kind",
        "JobStatusEnum": "jobs.models.Job.Status",
        "StudyStatusEnum": "annotation.models.Study.Status",
    },
}

# Celery: Redis when REDIS_URL is set; otherwise kombu's filesystem transport, which a separate
# worker process (started by `make demo`) consumes. Jobs never run inline in a web request.
REDIS_URL = os.environ.get("REDIS_URL", "")
CELERY_DATA_DIR = VAR_DIR / "celery"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    # A publish from a web request gives up after ~2 s if Redis does not answer (refused, or accepting
    # connections but silent) instead of hanging the request: the job stays queued and the beat task
    # `jobs.dispatch_pending` sends it when Redis is back. socket_timeout stays above the worker's BRPOP
    # wait (1 s, kombu's default) so that an idle consumer is not taken for a dead connection.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": 4 * 3600,
        "socket_connect_timeout": 2,
        "socket_timeout": 2,
    }
else:
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_DATA_DIR / "queue"),
        "data_folder_out": str(CELERY_DATA_DIR / "queue"),
        "processed_folder": str(CELERY_DATA_DIR / "processed"),
        "control_folder": str(CELERY_DATA_DIR / "control"),
        "store_processed": False,
    }
    for _key in ("data_folder_in", "processed_folder", "control_folder"):
        _folder = CELERY_BROKER_TRANSPORT_OPTIONS[_key]
        Path(_folder).mkdir(parents=True, exist_ok=True)
CELERY_TASK_IGNORE_RESULT = True  # results live on Job rows, not in a result backend
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Two queues (jobs/registry.py): "short" for jobs of seconds (exports) and the periodic tasks, "long" for
# benchmarks, analyses and latent estimation; each job's message goes to its kind's queue (jobs/routing.py).
# A worker started without -Q consumes both; with two workers (`-Q short` and `-Q long`, as in
# docker-compose.yml) an export never waits behind a benchmark.
CELERY_TASK_DEFAULT_QUEUE = "short"
# Each queue its own exchange and routing key: without them Celery gives every queue the default queue's
# (a message routed to "long" would land in "short").
CELERY_TASK_QUEUES = tuple(Queue(name, Exchange(name), routing_key=name) for name in ("short", "long"))
CELERY_TASK_ROUTES = ("jobs.routing.route_task",)
# A job over the soft limit ends `failed` ("stopped after its time limit"); one that ignores it is killed at
# the hard limit and the reaper fails it. The soft limit leaves the job up to 60 s to stop (a tenth of the
# limit when that is shorter). Time limits need the default prefork pool (not --pool=solo or threads).
CELERY_TASK_TIME_LIMIT = int(os.environ.get("CELERY_TASK_TIME_LIMIT", str(2 * 3600)))
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - min(60, max(1, CELERY_TASK_TIME_LIMIT // 10))
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Publishing (run_job.delay) tries once more at most, then raises, so that job_enqueue can answer at once.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}
# Jobs whose worker died (jobs/services.py): a running job writes heartbeat_at every JOB_HEARTBEAT_SECONDS;
# one silent for JOB_STALE_SECONDS is run again from the start, up to JOB_MAX_ATTEMPTS runs in all, then
# failed (beat task `jobs.reap_stale`). Queued jobs the broker never took are sent again by
# `jobs.dispatch_pending` once Redis answers.
JOB_HEARTBEAT_SECONDS = float(os.environ.get("JOB_HEARTBEAT_SECONDS", "30"))
JOB_STALE_SECONDS = float(os.environ.get("JOB_STALE_SECONDS", "120"))
JOB_MAX_ATTEMPTS = int(os.environ.get("JOB_MAX_ATTEMPTS", "3"))
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE = {
    "release-reservations": {"task": "annotation.release_reservations", "schedule": 300.0},
    "clear-sessions": {"task": "config.clear_sessions", "schedule": 24 * 3600.0},
    # /healthz reports a worker as gone when its last heartbeat is older than WORKER_HEARTBEAT_MAX_AGE.
    "worker-heartbeat": {"task": "config.worker_heartbeat", "schedule": 30.0, "options": {"expires": 30}},
    "jobs-reap-stale": {"task": "jobs.reap_stale", "schedule": 60.0, "options": {"expires": 60}},
    "jobs-dispatch-pending": {"task": "jobs.dispatch_pending", "schedule": 60.0, "options": {"expires": 60}},
}
WORKER_HEARTBEAT_MAX_AGE = int(os.environ.get("WORKER_HEARTBEAT_MAX_AGE", "180"))  # seconds

# LLM adapters of the model benchmark: any OpenAI-compatible chat endpoint. Replies are cached on
# disk so that a rerun costs nothing.
LLM_BASE_URL = os.environ.get("LLM_BASE_URL", "")
LLM_MODEL = os.environ.get("LLM_MODEL", "")
LLM_API_KEY = os.environ.get("LLM_API_KEY", "")
LLM_CACHE_DIR = Path(os.environ.get("LLM_CACHE_DIR", VAR_DIR / "llm-cache"))

# Recruitment link (annotation/services/recruitment.py). A place counts against max_annotators from
# consent on; arrivals who never consent are deleted after RECRUITMENT_UNCONSENTED_MINUTES idle, and
# prompts reserved but not one answered after RECRUITMENT_START_MINUTES are released (both by the
# beat task `release-reservations`). New annotators per client address are limited to
# RECRUITMENT_RATE_LIMIT ("count/period", period in s, m, h or d); resuming is never limited.
# BEHIND_PROXY: trust the last X-Forwarded-For entry (the one our proxy appends), and only then.
BEHIND_PROXY = env_bool("BEHIND_PROXY", False)
RECRUITMENT_UNCONSENTED_MINUTES = int(os.environ.get("RECRUITMENT_UNCONSENTED_MINUTES", "15"))
RECRUITMENT_START_MINUTES = int(os.environ.get("RECRUITMENT_START_MINUTES", "15"))
RECRUITMENT_RATE_LIMIT = os.environ.get("RECRUITMENT_RATE_LIMIT", "20/10m")
# Rating answers per annotator (same format), counted over the trailing period from the annotator's own
# answered trials (annotation/services/rating.py), so it needs no cache. A person reading each prompt rates
# a few a minute; the limit stops a script flooding the loop, and is set high by the load benchmark.
RATING_RATE_LIMIT = os.environ.get("RATING_RATE_LIMIT", "120/1m")
# The recruitment rate-limit counters need a cache every web process shares: Redis when there is one; otherwise a
# database table (the embedded default runs several processes, so local memory would not do), created
# by `migrate` (annotation/apps.py runs createcachetable after migrating).
if REDIS_URL:
    SESSION_ENGINE = "config.sessions"  # cached_db that survives a Redis outage (see SESSION_ENGINE above)
    CACHES = {
        "default": {
            "BACKEND": "config.cache.Cache",  # Django's Redis cache, clients reused (config/cache.py)
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "pluriharms",
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "pluriharms_cache",
            "OPTIONS": {"MAX_ENTRIES": 50000},
        }
    }

# Annotator links carry recruitment ids in their query string (PROLIFIC_PID…): the access log of runserver
# (django.server) and django.request write /s/… requests without it (config/logging.py; gunicorn.conf.py
# does the same in production). django.server keeps Django's own handler and format, redeclared here
# because configuring a logger replaces its handlers. Every record carries request_id and job_id ("-"
# outside a request or a job); LOG_FORMAT=json writes one JSON object a line (time, level, logger,
# message, request_id, job_id). The Celery worker and beat use this too (config/celery_app.py).
LOG_FORMAT = os.environ.get("LOG_FORMAT", "text").strip().lower() or "text"
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'text' or 'json', not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "recruitment_query": {"()": "config.logging.RecruitmentQueryFilter"},
        "log_context": {"()": "config.logging.LogContextFilter"},
    },
    "formatters": {
        "django.server": {
            "()": "django.utils.log.ServerFormatter",
            "format": "[{server_time}] {message}",
            "style": "{",
        },
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [request=%(request_id)s job=%(job_id)s] %(message)s"},
        "json": {"()": "config.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["log_context", "recruitment_query"],
        },
        "django.server": {
            "level": "INFO",
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "django.server",
            "filters": ["log_context"],
        },
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django.server": {
            "handlers": ["django.server"],
            "level": "INFO",
            "propagate": False,
            "filters": ["recruitment_query"],
        },
        "django.request": {"filters": ["recruitment_query"]},
    },
}
