"""Settings for b24app, read from the environment (and an optional `.env` file).

Defaults are safe for production: DEBUG off, the sandbox off, HTTPS-only cookies. The development
values live in `.env.example`, which `make` copies to `.env` on a fresh clone. Every variable read
here is listed in `.env.example`; a secret may also be given as a file path in `<NAME>_FILE`.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import environ
from csp.constants import NONCE, NONE, SELF

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.FileAwareEnv()
# Values already in the environment win over the file. B24_ENV_FILE=/dev/null reads none.
environ.FileAwareEnv.read_env(environ.os.environ.get("B24_ENV_FILE", str(BASE_DIR / ".env")))

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_ratelimit",
    "template_partials",
    "csp",
    "b24app.portals",
    "b24app.messaging",
    "b24app.campaigns",
]

# The sandbox is a local Bitrix24 for trying and testing the app. It is never on in production:
# it widens the host allow-list to loopback portals and admits plain-HTTP portals.
B24_SANDBOX = env.bool("B24_SANDBOX", default=False)
if B24_SANDBOX:
    INSTALLED_APPS.append("b24app.sandbox")
    # requests-oauthlib refuses plain-HTTP token URLs unless told otherwise; the sandbox's OAuth
    # server is HTTP on loopback. hosts.oauth_endpoint still admits HTTP only for sandbox hosts.
    environ.os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_ratelimit.middleware.RatelimitMiddleware",
    "b24app.portals.middleware.BodyLimitMiddleware",
]

ROOT_URLCONF = "b24app.urls"
WSGI_APPLICATION = "b24app.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "csp.context_processors.nonce",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside one writer; IMMEDIATE makes every transaction take the write
    # lock up front, which is what serialises token refreshes on SQLite (select_for_update is a
    # no-op there). The test database is a file too, so threads and worker processes share it.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # One file per test run (pid), so concurrent runs in one checkout never share a database;
    # worker subprocesses started by tests read the name from the test's connection settings.
    DATABASES["default"]["TEST"] = {
        "NAME": str(BASE_DIR / f".test-db-{environ.os.getpid()}.sqlite3")
    }
    # A new SQLite connection costs about a millisecond (open, the PRAGMAs above, close): more
    # than most requests. There is no server to hold connections for, so keep them open.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=600)
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=0))

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("ru", "Русский")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# Request bodies: 1 MB by default, answered with 413 (portals.middleware); a view may allow
# more with @body_limit (CSV uploads: 2 MB).
B24_BODY_LIMIT = env.int("B24_BODY_LIMIT", default=1_000_000)
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2_500_000)
# The composer posts every field of the attachment and keyboard builders at once.
DATA_UPLOAD_MAX_NUMBER_FIELDS = 5000

# A cache shared by every process (rate limits): the database by default, Redis if CACHE_URL
# says so (e.g. redis://127.0.0.1:6379/2).
CACHES = {"default": env.cache("CACHE_URL", default="dbcache://b24app_cache")}
RATELIMIT_VIEW = "b24app.portals.views.rate_limited"
if CACHES["default"]["BACKEND"].endswith("DatabaseCache"):
    # django-ratelimit wants a cache with atomic increments (Redis). On the database cache two
    # simultaneous requests can both count as one, letting a few extra through; acceptable for
    # abuse protection of the public endpoints, and set CACHE_URL to Redis to make it exact.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001"]
# Install, events and entry are public endpoints: this many requests per minute per address.
B24_PUBLIC_RATE = env.str("B24_PUBLIC_RATE", default="120/m")

# --- Security -----------------------------------------------------------------------------------
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# django-csp: frame views replace frame-ancestors with their portal's origin (portals.frame).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src-elem": [SELF, NONCE],
        # Style attributes carry only colours and pixel sizes validated by messaging.payload.
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": [SELF, "https:", "data:"],
        "connect-src": [SELF],
        "form-action": [SELF],
        "base-uri": [SELF],
        "object-src": [NONE],
        "frame-ancestors": [NONE],
    },
}

# --- Celery ---------------------------------------------------------------------------------------
# Embedded default: kombu's SQLAlchemy transport on a SQLite file, so a fresh clone needs no broker.
CELERY_BROKER_URL = env.str(
    "CELERY_BROKER_URL", default=f"sqla+sqlite:///{BASE_DIR / 'celery-broker.sqlite3'}"
)
# The database transport is polled (kombu's default: once a second). Sending chains hop from task
# to task several times a second per portal, so poll ten times a second: one indexed SELECT per
# queue each time, a few per cent of a core on an idle worker. Pushing brokers (Redis, RabbitMQ)
# ignore it. b24app/celery.py applies it: kombu's SQLAlchemy transport hands every transport
# option to SQLAlchemy's create_engine, which refuses `polling_interval`.
B24_BROKER_POLL_S = env.float("B24_BROKER_POLL_S", default=0.1)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = env.str(
    "CELERY_BEAT_SCHEDULE_FILENAME", default=str(BASE_DIR / ".celerybeat-schedule")
)
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "portals-refresh-idle-tokens": {
        "task": "b24app.portals.tasks.portals_refresh_idle",
        "schedule": 3600.0,
    },
    # Settles campaign sends lost with a worker and restarts stopped sending chains (issue 5).
    "campaigns-recover": {"task": "b24app.campaigns.tasks.campaigns_recover", "schedule": 30.0},
}

# --- Bitrix24 -----------------------------------------------------------------------------------
B24_CLIENT_ID = env.str("B24_CLIENT_ID", default="")
B24_CLIENT_SECRET = env.str("B24_CLIENT_SECRET", default="")
# The app's CODE as `app.info` reports it, which install and events must match (spec §5.9). A
# local app reports its client id, so empty means B24_CLIENT_ID; a Marketplace app may report a
# code of its own (e.g. `vendor.appname`): set it here.
B24_APP_CODE = env.str("B24_APP_CODE", default="")
# Public base URL of this app, used to build the event handler URLs given to event.bind.
B24_APP_URL = env.str("B24_APP_URL", default="http://127.0.0.1:8000").rstrip("/")
# Hosts the app will ever call with a token it was handed. An install POST names its own portal
# and OAuth server; only hosts matching these patterns are believed (host[:port]; `*` matches
# inside one dot-separated label, so `*.bitrix24.*` never matches `x.bitrix24.evil.com`).
B24_OAUTH_HOSTS = env.list("B24_OAUTH_HOSTS", default=["oauth.bitrix.info", "oauth.bitrix24.tech"])
B24_PORTAL_HOSTS = env.list(
    "B24_PORTAL_HOSTS",
    default=["*.bitrix24.*", "*.bitrix24.com.br", "*.bitrix24.com.tr"],
)
# Loopback portals of the sandbox; they alone may use PROTOCOL=0 (plain HTTP).
B24_SANDBOX_HOSTS = env.list("B24_SANDBOX_HOSTS", default=["localhost:81??", "127.0.0.1:81??"])
B24_SANDBOX_URL = env.str("B24_SANDBOX_URL", default="http://localhost:8100").rstrip("/")
if B24_SANDBOX:
    B24_OAUTH_HOSTS = [*B24_OAUTH_HOSTS, *B24_SANDBOX_HOSTS]
    B24_PORTAL_HOSTS = [*B24_PORTAL_HOSTS, *B24_SANDBOX_HOSTS]

# Fernet keys for tokens at rest, newest first (MultiFernet: rotate by prepending a new key).
# Without any, one key is derived from SECRET_KEY so that a fresh clone works.
B24_TOKEN_KEYS = env.list("B24_TOKEN_KEYS", default=[]) or [
    base64.urlsafe_b64encode(
        hashlib.sha256(f"b24app-tokens:{SECRET_KEY}".encode()).digest()
    ).decode()
]
B24_FRAME_TOKEN_MAX_AGE = env.int("B24_FRAME_TOKEN_MAX_AGE", default=30 * 60)
B24_REQUEST_TIMEOUT = env.float("B24_REQUEST_TIMEOUT", default=30.0)
# Refresh tokens live 180 days by the current docs but 28 by older ones (spec §2.2); refresh a
# portal that has been idle this long so its refresh token can never lapse.
B24_REFRESH_IDLE_DAYS = env.int("B24_REFRESH_IDLE_DAYS", default=20)
# Platform limits (spec §4): default plan; a portal can override them in its settings.
B24_RATE = env.float("B24_RATE", default=2.0)
B24_BURST = env.int("B24_BURST", default=50)
B24_OP_BUDGET_S = env.float("B24_OP_BUDGET_S", default=480.0)
B24_OP_WINDOW_S = env.float("B24_OP_WINDOW_S", default=600.0)
B24_PACER_REDIS_URL = env.str("B24_PACER_REDIS_URL", default="")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "b24app.portals.logredact.RedactSecrets"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["redact"]}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
