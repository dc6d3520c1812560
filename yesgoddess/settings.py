"""Django settings for YesGoddess.

Every environment variable of the project is read in this module and nowhere else.
Each one goes through a strict helper that fails at start with a message naming the
variable, so a typo in production is a crash at boot, not a surprise at 3 AM.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _bad(name: str, value: str, expected: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"Environment variable {name}={value!r} is invalid: expected {expected}.")


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise ImproperlyConfigured(f"Environment variable {name} is required.")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise _bad(name, raw, "one of 1/0, true/false, yes/no, on/off")


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad(name, raw, "an integer") from None
    if minimum is not None and value < minimum:
        raise _bad(name, raw, f"an integer >= {minimum}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_url(name: str, default: str, schemes: tuple[str, ...]) -> str:
    raw = os.environ.get(name, default)
    parsed = urlparse(raw)
    if parsed.scheme not in schemes or not (parsed.hostname or parsed.path):
        raise _bad(name, raw, f"a URL with scheme {' or '.join(schemes)}")
    return raw


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name, default)
    if raw not in choices:
        raise _bad(name, raw, f"one of {', '.join(choices)}")
    return raw


def env_hostports(name: str) -> list[tuple[str, int]]:
    """Comma-separated host:port pairs -> [(host, port), ...]; empty when unset."""
    pairs = []
    for item in env_list(name, []):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise _bad(name, os.environ[name], "host:port pairs separated by commas")
        pairs.append((host.strip("[]"), int(port)))
    return pairs


# --- core -------------------------------------------------------------------------

DEBUG = env_bool("DEBUG", False)
_secret = os.environ.get("SECRET_KEY")
if not _secret:
    if not DEBUG:
        raise ImproperlyConfigured("Environment variable SECRET_KEY is required unless DEBUG=1.")
    _secret = "insecure-development-key-do-not-use-in-production"
SECRET_KEY = _secret
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
# Production is served over HTTPS, so cookies travel over HTTPS only; development (DEBUG)
# is plain HTTP. The HTTPS redirect and HSTS are the TLS proxy's in front of gunicorn:
# `check --deploy` says so (W004, W008), as docs/operations.md explains.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = not DEBUG

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_rq",
    "yesgoddess.accounts",
    "yesgoddess.core",
    "yesgoddess.notifications",
    "yesgoddess.brands",
    "yesgoddess.projects",
    "yesgoddess.creators",
    "yesgoddess.assets",
    "yesgoddess.licensing",
    "yesgoddess.royalties",
    "yesgoddess.analytics",
    "yesgoddess.emailing",
    "yesgoddess.messaging",
    "yesgoddess.campaigns",
    "yesgoddess.blog",
    "yesgoddess.search",
    "jobs",
]

MIDDLEWARE = [
    # First, so that every line logged while a request is served carries its request id.
    "yesgoddess.core.logs.RequestIdMiddleware",
    # /healthz and /readyz, answered before the HTTPS redirect and the host check: probes
    # come over plain HTTP, addressed by IP (yesgoddess/core/health.py).
    "yesgoddess.core.health.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves STATIC_ROOT (filled by collectstatic) under STATIC_URL from gunicorn itself.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "yesgoddess.urls"
WSGI_APPLICATION = "yesgoddess.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["yesgoddess.accounts.auth.LockoutAwareBackend"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "yesgoddess" / "templates"],
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

# --- database ----------------------------------------------------------------------

DATABASE_URL = env_url("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/yesgoddess", ("postgres", "postgresql"))
try:
    _db = dj_database_url.parse(DATABASE_URL)
except ValueError as exc:
    raise _bad("DATABASE_URL", DATABASE_URL, f"a PostgreSQL URL ({exc})") from None
# Workers close connections after each job (jobs/runtime.py); CONN_MAX_AGE=0 makes that a
# real close. CONN_HEALTH_CHECKS drops a connection PostgreSQL already closed before use.
_db["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 0, minimum=0)
_db["CONN_HEALTH_CHECKS"] = True
DATABASES = {"default": _db}

# --- time: rq-scheduler evaluates cron strings in process-local time, and Django sets
# the process time zone from TIME_ZONE. UTC here is what makes every cron string UTC.
TIME_ZONE = "UTC"
USE_TZ = True
USE_I18N = True
LANGUAGE_CODE = "en-us"

# --- redis and jobs ---------------------------------------------------------------

REDIS_URL = env_url("REDIS_URL", "redis://127.0.0.1:6379/0", ("redis", "rediss", "unix"))
# TLS (rediss://): CA bundle, client certificate and key (mutual TLS), and how strictly
# the server's certificate is checked.
REDIS_SSL_CA_CERTS = env_str("REDIS_SSL_CA_CERTS", "")
REDIS_SSL_CERTFILE = env_str("REDIS_SSL_CERTFILE", "")
REDIS_SSL_KEYFILE = env_str("REDIS_SSL_KEYFILE", "")
REDIS_SSL_CERT_REQS = env_choice("REDIS_SSL_CERT_REQS", "required", ("required", "optional", "none"))
# Redis Sentinel: "host:port,host:port" and the monitored master's name. With them the
# master is found through the sentinels; REDIS_URL then gives only the scheme (rediss:
# TLS), password and database number. yesgoddess/core/redis.py builds every client.
REDIS_SENTINELS = env_hostports("REDIS_SENTINELS")
REDIS_SENTINEL_MASTER = env_str("REDIS_SENTINEL_MASTER", "")
REDIS_SENTINEL_PASSWORD = env_str("REDIS_SENTINEL_PASSWORD", "")
if REDIS_SENTINELS and not REDIS_SENTINEL_MASTER:
    raise ImproperlyConfigured("Environment variable REDIS_SENTINEL_MASTER is required with REDIS_SENTINELS.")

# django-rq (workers, rqscheduler, the admin panel) takes its client from this alias,
# which hands out yesgoddess.core.redis.redis_connection(): one client for everything.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "rq-redis": {"BACKEND": "yesgoddess.core.redis.DjangoRQConnection"},
}

JOB_QUEUES = ("critical", "default", "media", "scheduled", "bulk")
RQ_QUEUES = {
    name: {
        "USE_REDIS_CACHE": "rq-redis",
        "DEFAULT_TIMEOUT": 600,
        "SERIALIZER": "rq.serializers.JSONSerializer",
    }
    for name in JOB_QUEUES
}
RQ = {
    # jobs/api.py waits for the commit itself (so it can return the job id); the queues
    # must therefore enqueue at once when asked.
    "COMMIT_MODE": "auto",
    "JOB_CLASS": "jobs.rq_classes.JSONJob",
    "WORKER_CLASS": env_str("RQ_WORKER_CLASS", "jobs.rq_classes.DjangoSimpleWorker"),
    "DEFAULT_RESULT_TTL": 3600,
    # rq-scheduler that lists itself in a Redis set, so /readyz finds its heartbeat.
    "SCHEDULER_CLASS": "jobs.rq_classes.IndexedScheduler",
}
# A killed worker's job is found by another worker's maintenance pass. The started-job
# registry entry expires JOB_MONITORING_INTERVAL + 60 s after the last heartbeat; the
# pass runs every MAINTENANCE_INTERVAL: together under 2 minutes (bench/abandoned_job.py).
RQ_WORKER_TTL = env_int("RQ_WORKER_TTL", 40, minimum=20)
RQ_JOB_MONITORING_INTERVAL = env_int("RQ_JOB_MONITORING_INTERVAL", 10, minimum=1)
RQ_MAINTENANCE_INTERVAL = env_int("RQ_MAINTENANCE_INTERVAL", 20, minimum=5)
# How long a job may wait in its queue before RQ drops it, and the TTLs used when a
# registry entry does not say otherwise.
JOB_DEFAULT_RESULT_TTL = env_int("JOB_DEFAULT_RESULT_TTL", 24 * 3600, minimum=0)
JOB_DEFAULT_FAILURE_TTL = env_int("JOB_DEFAULT_FAILURE_TTL", 14 * 24 * 3600, minimum=60)
SCHEDULE_LOCK_TIMEOUT = env_int("SCHEDULE_LOCK_TIMEOUT", 60, minimum=5)
# Bearer token of GET /metrics (Prometheus); unset: the URL answers 404.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")

# --- storage ---------------------------------------------------------------------

MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = env_str("MEDIA_URL", "/media/")
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
STATIC_URL = "/static/"
# Local files by default, written atomically (temp file + rename) so that a job that
# dies mid-write never leaves half a file behind; S3 (django-storages) PUTs are atomic.
STORAGE_BACKEND = env_str("STORAGE_BACKEND", "yesgoddess.core.storage.AtomicFileSystemStorage")
STORAGES = {
    "default": {"BACKEND": STORAGE_BACKEND},
    # collectstatic compresses (gzip) and, without DEBUG, names each file after its content
    # hash so WhiteNoise can send it with a far-future cache header. Hashed names need the
    # manifest collectstatic writes, so DEBUG runs (tests, `make`) keep plain names.
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 100 * 1024 * 1024, minimum=1)

# --- email -----------------------------------------------------------------------

# Every send goes through the rate-limited wrapper; EMAIL_BACKEND names the backend that
# really delivers (SMTP, an ESP's django-anymail backend, locmem in tests).
EMAIL_DELIVERY_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_BACKEND = "yesgoddess.emailing.backends.RateLimitedBackend"
# Messages per second for the whole system (all workers, through Redis); 0: no limit.
EMAIL_RATE_LIMIT_PER_SECOND = env_int("EMAIL_RATE_LIMIT_PER_SECOND", 20, minimum=0)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "YesGoddess <no-reply@yesgoddess.local>")
ADMIN_EMAILS = env_list("ADMIN_EMAILS", [])
# Base of every link in an email (no trailing slash).
APP_URL = env_url("APP_URL", "http://localhost:3000", ("http", "https")).rstrip("/")
# Public base URL of this API (unsubscribe links and provider webhooks point here).
API_URL = env_url("API_URL", "http://localhost:8000", ("http", "https")).rstrip("/")
# Messages sent over one SMTP connection before it is reopened; also the size of the
# batches in which a job claims recipients, so a crash repeats at most one batch.
EMAIL_BATCH_SIZE = env_int("EMAIL_BATCH_SIZE", 200, minimum=1)
# Batch jobs of one campaign that may run at once, on as many `bulk` workers: the chain's
# job and up to N - 1 `email-campaign.helper` jobs (1: the chain alone).
EMAIL_CAMPAIGN_PARALLEL_BATCHES = env_int("EMAIL_CAMPAIGN_PARALLEL_BATCHES", 1, minimum=1)
# SMTP connections one batch is sent over at once (a thread each; 25+ messages each).
EMAIL_SEND_CONNECTIONS = env_int("EMAIL_SEND_CONNECTIONS", 4, minimum=1)
# Pending immediate notification emails one notification-delivery flush takes (it
# re-queues itself while more remain), and users per notification-digest batch job.
NOTIFICATION_DELIVERY_BATCH = env_int("NOTIFICATION_DELIVERY_BATCH", 500, minimum=1)
NOTIFICATION_DIGEST_BATCH = env_int("NOTIFICATION_DIGEST_BATCH", 500, minimum=1)

# --- email provider events (django-anymail, Mailgun) -------------------------------
# The provider posts delivery, bounce, complaint, open and click events to
# API_URL/anymail/mailgun/tracking/, each signed with this key (Mailgun's "HTTP webhook
# signing key"); without it the endpoint refuses everything. ANYMAIL_WEBHOOK_SECRET
# ("user:password") adds HTTP basic auth on top. MAILGUN_API_KEY / MAILGUN_SENDER_DOMAIN
# are for EMAIL_BACKEND=anymail.backends.mailgun.EmailBackend. Only keys that are set go
# into ANYMAIL: an empty signing key would make every signature "valid".
ANYMAIL = {
    key: value
    for key, value in {
        "MAILGUN_WEBHOOK_SIGNING_KEY": env_str("MAILGUN_WEBHOOK_SIGNING_KEY", ""),
        "MAILGUN_API_KEY": env_str("MAILGUN_API_KEY", ""),
        "MAILGUN_SENDER_DOMAIN": env_str("MAILGUN_SENDER_DOMAIN", ""),
        "WEBHOOK_SECRET": env_str("ANYMAIL_WEBHOOK_SECRET", ""),
    }.items()
    if value
}
# The domain reputation figures are filed under when a message's own sender is unknown.
EMAIL_SENDER_DOMAIN = (
    env_str("EMAIL_SENDER_DOMAIN", "") or DEFAULT_FROM_EMAIL.rpartition("@")[2].strip(" >").lower() or "localhost"
)
# reputation-monitoring raises no alert (and pauses nothing) below this many sends in
# its 30-day window: two bounces out of ten say little about a domain.
EMAIL_REPUTATION_MIN_SENT = env_int("EMAIL_REPUTATION_MIN_SENT", 100, minimum=1)

# --- virus scanner (clamd) ---------------------------------------------------------

CLAMD_SOCKET = env_str("CLAMD_SOCKET", str(VAR_DIR / "run" / "clamd.sock"))
# clamd's StreamMaxLength must be at least the upload limit, or large uploads are
# refused by the scanner instead of scanned.
CLAMD_STREAM_MAX_LENGTH = env_int("CLAMD_STREAM_MAX_LENGTH", UPLOAD_MAX_BYTES, minimum=UPLOAD_MAX_BYTES)
# Seconds the thumbnail and metadata steps may spend in ffmpeg/ffprobe/poppler. Past it
# the machine is at fault (busy), not the file: the step is retried, never rejected.
MEDIA_TOOL_TIMEOUT = env_int("MEDIA_TOOL_TIMEOUT", 120, minimum=1)

# Key of the HMAC behind forensic watermark ids. Changing it makes ids issued before
# unverifiable, so production sets its own; the default derives from SECRET_KEY.
WATERMARK_FORENSIC_KEY = env_str("WATERMARK_FORENSIC_KEY", "") or f"forensic:{SECRET_KEY}"

# --- retention of system rows --------------------------------------------------------

IDEMPOTENCY_KEY_TTL_HOURS = env_int("IDEMPOTENCY_KEY_TTL_HOURS", 24, minimum=1)
CLEANUP_BATCH_SECONDS = float(env_int("CLEANUP_BATCH_MS", 250, minimum=10)) / 1000

# --- licenses ------------------------------------------------------------------------

# Raw usage events are kept this long; daily aggregates forever (spec B §5.5.5).
USAGE_EVENT_RETENTION_DAYS = env_int("USAGE_EVENT_RETENTION_DAYS", 90, minimum=1)

# --- analytics -----------------------------------------------------------------------

# Events enriched by one flush job (a constant number of queries per flush).
ANALYTICS_ENRICH_BATCH = env_int("ANALYTICS_ENRICH_BATCH", 1000, minimum=1)
# Seconds the "a flush is queued" marker lives: the longest a new event waits for a
# flush to be queued if the one it counted on was lost before running.
ANALYTICS_ENRICH_MAX_WAIT = env_int("ANALYTICS_ENRICH_MAX_WAIT", 5, minimum=1)

# --- royalties -----------------------------------------------------------------------

# Payout thresholds (spec C §2.1 step 9); a creator's custom minimum wins over both.
MINIMUM_PAYOUT_THRESHOLD_CENTS = env_int("MINIMUM_PAYOUT_THRESHOLD_CENTS", 2000, minimum=0)
VIP_MINIMUM_PAYOUT_THRESHOLD_CENTS = env_int("VIP_MINIMUM_PAYOUT_THRESHOLD_CENTS", 0, minimum=0)
# Whether usage revenue (x revShareBps) is royalty-bearing, besides the prorated fee.
ROYALTY_USAGE_REVENUE = env_bool("ROYALTY_USAGE_REVENUE", True)

# --- search ----------------------------------------------------------------------------

# Objects the search-index-update flush takes per run (one UPDATE per type for all of them).
SEARCH_UPDATE_BATCH = env_int("SEARCH_UPDATE_BATCH", 1000, minimum=1)
# How long after the first save of a quiet period the flush runs: a burst of saves within
# it is one flush. 0 enqueues at once.
SEARCH_FLUSH_DELAY_SECONDS = env_int("SEARCH_FLUSH_DELAY_SECONDS", 1, minimum=0)
# Objects taken by a flush that died become pending again after this long.
SEARCH_FLUSH_LEASE_SECONDS = env_int("SEARCH_FLUSH_LEASE_SECONDS", 60, minimum=1)
# Target duration of one UPDATE of the weekly rebuild (batches are sized to it).
SEARCH_REBUILD_BATCH_MS = env_int("SEARCH_REBUILD_BATCH_MS", 250, minimum=10)

# --- logging -----------------------------------------------------------------------

LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))
# plain: human-readable lines (development); json: one JSON object per line, with `job` and
# `job_id` on every line logged inside a job and `request_id` inside a request.
LOG_FORMAT = env_choice("LOG_FORMAT", "plain", ("plain", "json"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "yesgoddess.core.logs.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": ["levelname", "name", "message"],
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]}},
    # One handler for every logger, so that in json mode every line is JSON: RQ's and
    # rq-scheduler's (which add their own plain handlers only when none is found), and
    # Django's (its default handlers replaced; unhandled request errors logged here).
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "jobs": {"level": LOG_LEVEL},
        "yesgoddess": {"level": LOG_LEVEL},
        "django": {"level": "INFO"},
        # rq-scheduler adds a plain handler of its own to this logger unless it has one.
        "rq_scheduler.scheduler": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}

# --- error reports and alerts ---------------------------------------------------------

# Sentry (yesgoddess/core/sentry.py): unset, nothing is initialised and nothing is sent.
SENTRY_DSN = env_str("SENTRY_DSN", "")
SENTRY_ENVIRONMENT = env_str("SENTRY_ENVIRONMENT", "production")
# Who hears of a job's final failure and of a cron entry that stopped succeeding
# (jobs/alerts.py calls them; dotted paths, so the job framework imports no domain app).
JOB_FAILURE_ALERT = "yesgoddess.notifications.job_alerts.alert_job_failure"
CRON_ALERT = "yesgoddess.notifications.job_alerts.alert_cron_state"
# The dead-man's switch allows a cron run this long (plus the job's own timeout on every
# attempt) after it fired before it calls the run missing.
CRON_ALERT_GRACE_SECONDS = env_int("CRON_ALERT_GRACE_SECONDS", 900, minimum=0)

# Modules whose JOBS tuples are merged into the registry. Empty in production; the test
# suite sets it (for its worker processes too) to register jobs that fail on purpose.
EXTRA_JOB_MODULES = env_list("EXTRA_JOB_MODULES", [])
