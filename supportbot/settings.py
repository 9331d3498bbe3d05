"""Settings, read from the environment through one `env` object.

In development (the default) the embedded servers started by `make run` / `make test` publish
their addresses in `var/devstack.json`; an environment variable always wins over that file.
In production (`SUPPORTBOT_ENV=production`) secrets have no defaults and must be set.
"""

import json
from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab

from supportbot.client_address import trusted_networks_parse

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()


def _devstack_value(key: str) -> str | None:
    """What the embedded dev stack wrote for `key`, if it is running."""
    path = VAR_DIR / "devstack.json"
    try:
        value = json.loads(path.read_text()).get(key)
    except (OSError, ValueError):
        return None
    return value or None


SUPPORTBOT_ENV = env.str("SUPPORTBOT_ENV", default="development")
if SUPPORTBOT_ENV not in {"development", "production"}:
    raise environ.ImproperlyConfigured("SUPPORTBOT_ENV must be 'development' or 'production'.")
PRODUCTION = SUPPORTBOT_ENV == "production"
# Development by default; set explicitly, it says "this is a development server on purpose".
SUPPORTBOT_ENV_EXPLICIT = "SUPPORTBOT_ENV" in env.ENVIRON

# The key every checkout shares: public, so never for a server others can reach.
DEVELOPMENT_SECRET_KEY = "dev-only-insecure-key-never-use-in-production"  # noqa: S105

DEBUG = env.bool("DEBUG", default=not PRODUCTION)
if PRODUCTION:
    if DEBUG:
        raise environ.ImproperlyConfigured(
            "DEBUG is on with SUPPORTBOT_ENV=production: debug pages show settings and code to "
            "anyone. Unset DEBUG."
        )
    SECRET_KEY = env.str("SECRET_KEY")
    if SECRET_KEY == DEVELOPMENT_SECRET_KEY:
        raise environ.ImproperlyConfigured(
            "SECRET_KEY is the public development key: set a long random one."
        )
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")
else:
    SECRET_KEY = env.str("SECRET_KEY", default=DEVELOPMENT_SECRET_KEY)
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

# A development server running on defaults nobody chose (SUPPORTBOT_ENV unset, with DEBUG on
# or the development key) answers connections made to a loopback address only
# (supportbot.development_guard); anything else is refused. `make run` binds to loopback.
SERVE_LOOPBACK_ONLY = (
    not PRODUCTION
    and not SUPPORTBOT_ENV_EXPLICIT
    and (DEBUG or SECRET_KEY == DEVELOPMENT_SECRET_KEY)
)

# Key for encrypting secrets stored in the database (provider API keys). A comma-separated
# list of Fernet keys: the first encrypts, all decrypt (rotation). Derived from SECRET_KEY
# in development only.
if PRODUCTION:
    FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS")
else:
    FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[])

# The public URL of this service (scheme://host[:port]); used in the widget snippet.
PUBLIC_URL = env.str("PUBLIC_URL", default="")
# The widget's own origin (scheme://host[:port]; empty: the widget is served from PUBLIC_URL).
# Customers' snippets load the loader from it, so the iframe and its socket live on a host
# that never receives the admin's cookies (they are host-only); the admin answers 404 there.
WIDGET_PUBLIC_URL = env.str("WIDGET_PUBLIC_URL", default="").rstrip("/")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "supportbot.admin_security",
    "supportbot.tenants",
    "supportbot.compliance",
    "supportbot.compliance_desk",
    "conversations",
    "knowledge",
]

# --- REST API (README: "REST API") ------------------------------------------------------------
# django-ninja as an app: its docs page (/api/v1/docs) is served with its bundled Swagger UI
# from our own static files, not a CDN, so it works offline and under a same-origin policy.
INSTALLED_APPS += ["ninja"]
# The event stream's keep-alive comment, so proxies do not close a quiet stream.
API_EVENTS_HEARTBEAT_SECONDS = env.float("API_EVENTS_HEARTBEAT_SECONDS", default=15.0)

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "supportbot.admin_security.middleware.AdminSecurityMiddleware",
    # Last: turns a login refused for a lockout into its 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "supportbot.urls"
ASGI_APPLICATION = "supportbot.asgi.application"

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
                "supportbot.tenants.context_processors.budget_banners",
            ],
        },
    },
]

# --- Postgres -------------------------------------------------------------------------------
DATABASE_URL = env.str("DATABASE_URL", default="") or _devstack_value("database_url")
if not DATABASE_URL:
    raise environ.ImproperlyConfigured(
        "DATABASE_URL is not set and no embedded Postgres is running: start the app with "
        "`make run` (or `python -m supportbot.devstack services`), or set DATABASE_URL."
    )
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
# Under ASGI every request may run on another thread: no persistent connections, a pool instead.
DATABASES["default"]["CONN_MAX_AGE"] = 0
if env.bool("DATABASE_POOL", default=True):
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DATABASE_POOL_MIN", default=1),
        "max_size": env.int("DATABASE_POOL_MAX", default=10),
        "timeout": 10,
    }
    # A connection is checked (an empty query) as it leaves the pool: after a database restart
    # the pool's idle connections are all broken, and a request must not be the one to learn it.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("DATABASE_POOL_CHECK", default=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: Celery broker and channel layer --------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="") or _devstack_value("redis_url")
if not REDIS_URL:
    raise environ.ImproperlyConfigured(
        "REDIS_URL is not set and no embedded Redis is running: start the app with `make run`, "
        "or set REDIS_URL."
    )

# How long the application's Redis client (stream snapshots, limits) keeps trying a command
# while Redis is unreachable (a restart) before it gives up.
REDIS_RETRY_SECONDS = env.float("REDIS_RETRY_SECONDS", default=10.0)

# The channel layer on several Redis servers: each conversation's group (and each socket's
# channel) lives on one of them, chosen by a hash of its name. Every web and worker process must
# list the same URLs in the same order. Default: REDIS_URL alone.
CHANNEL_LAYER_REDIS_URLS = env.list("CHANNEL_LAYER_REDIS_URLS", default=[]) or [REDIS_URL]
CHANNEL_LAYERS = {
    "default": {
        # channels_redis's pub/sub layer, telling sockets when it lost Redis (resume).
        "BACKEND": "supportbot.channel_layer.ChannelLayer",
        "CONFIG": {"hosts": CHANNEL_LAYER_REDIS_URLS, "prefix": "supportbot"},
    }
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "supportbot",
    }
}

# The Celery broker on a Redis server of its own, when the shared one is busy. Default: REDIS_URL.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or REDIS_URL
# Kombu's Redis transport, hardened for a broker restart (supportbot/broker_transport.py).
if CELERY_BROKER_URL.startswith("redis://"):
    CELERY_BROKER_TRANSPORT = "supportbot.broker_transport:Transport"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# Queues by workload, each consumed by a worker of its own (Procfile, docker-compose.yml,
# `make run`): replies are short and latency-bound; a summary call may take up to
# LLM_DEADLINE and must never delay a reply. Knowledge uploads are parsed on a prefork worker
# (CPU-bound; time limits need prefork).
CELERY_TASK_ROUTES = {
    "conversations.generate_reply": {"queue": "replies"},
    "conversations.summarize_conversation": {"queue": "summaries"},
    "knowledge.ingest_upload": {"queue": "knowledge"},
}
# Surviving a Redis restart (docs/operations.md, "Faults and recovery"): the worker reconnects
# to the broker for as long as it takes, never gives up and exits; a task running when the
# connection drops runs on to its end (its late acknowledgement may be lost, and the job is
# then delivered again: the reply job's claim makes that a no-op).
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_BROKER_CONNECTION_TIMEOUT = 5
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# Publishing a job (a retry, a new reply) rides out a short broker outage too.
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 20,
    "interval_start": 0.2,
    "interval_step": 0.5,
    "interval_max": 2,
}
# An unacknowledged job (its worker died) is handed to another worker once it is older than
# the visibility timeout; workers look for such jobs every restore interval.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=300),
    "unacked_restore_interval": env.int("CELERY_UNACKED_RESTORE_INTERVAL", default=10),
    "unacked_restore_throttle": 1,
    # Dead connections are noticed (keepalive, a PING when idle) and timeouts retried.
    "socket_keepalive": True,
    "socket_timeout": 10,
    "socket_connect_timeout": 5,
    "retry_on_timeout": True,
    "health_check_interval": 10,
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_TASK_ALWAYS_EAGER = False

# --- Celery: two stacks on one Redis database (README: "Servers") ------------------------------
# A prefix for every key of the broker: each stack's workers take only that stack's jobs (a test
# stack beside another one, a staging beside a review app). Empty: no prefix.
_celery_key_prefix = env.str("CELERY_KEY_PREFIX", default="")
if _celery_key_prefix:
    CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = _celery_key_prefix

# Retention runs nightly at RETENTION_RUN_AT (HH:MM, UTC), deleting RETENTION_BATCH_SIZE rows
# per transaction.
_RETENTION_RUN_AT = env.str("RETENTION_RUN_AT", default="03:30")
try:
    _RETENTION_HOUR, _RETENTION_MINUTE = (int(part) for part in _RETENTION_RUN_AT.split(":"))
    if not (0 <= _RETENTION_HOUR < 24 and 0 <= _RETENTION_MINUTE < 60):
        raise ValueError(_RETENTION_RUN_AT)
except ValueError:
    raise environ.ImproperlyConfigured(
        f"RETENTION_RUN_AT is a time of day, HH:MM (UTC), not {_RETENTION_RUN_AT!r}."
    ) from None
RETENTION_BATCH_SIZE = env.int("RETENTION_BATCH_SIZE", default=500)
CELERY_BEAT_SCHEDULE = {
    "requeue-stalled-replies": {"task": "conversations.requeue_stalled_replies", "schedule": 60.0},
    # Person first: the assistant answers conversations no agent took within the wait.
    "release-person-first-waits": {
        "task": "conversations.release_person_first_waits",
        "schedule": 30.0,
    },
    # Retention: every tenant's expired conversations, LLM call records and audit events.
    "enforce-retention": {
        "task": "conversations.enforce_retention",
        "schedule": crontab(minute=_RETENTION_MINUTE, hour=_RETENTION_HOUR),
    },
    # Data request exports past DATA_EXPORT_RETENTION_HOURS are deleted.
    "remove-expired-exports": {"task": "compliance.remove_expired_exports", "schedule": 3600.0},
}

# --- Data subject requests ---------------------------------------------------------------------
# Export zips live here (never under static or media; served only through the tenant-checked
# download of the Data requests page) and are deleted this many hours after they were built.
DATA_EXPORT_DIR = env.path("DATA_EXPORT_DIR", default=str(VAR_DIR / "data-exports"))
DATA_EXPORT_RETENTION_HOURS = env.int("DATA_EXPORT_RETENTION_HOURS", default=24)

# --- Channels beyond the widget (README: "Channels") ------------------------------------------
# Each provider's API base URL, so staging and the tests point a channel at a server of theirs.
TELEGRAM_API_BASE = env.str("TELEGRAM_API_BASE", default="https://api.telegram.org").rstrip("/")
WHATSAPP_API_BASE = env.str("WHATSAPP_API_BASE", default="https://graph.facebook.com/v21.0").rstrip(
    "/"
)
SLACK_API_BASE = env.str("SLACK_API_BASE", default="https://slack.com/api").rstrip("/")
TWILIO_API_BASE = env.str("TWILIO_API_BASE", default="https://api.twilio.com").rstrip("/")
# One provider call of the outbox (connect and read), and how often a delivery is tried.
CHANNEL_HTTP_TIMEOUT = env.float("CHANNEL_HTTP_TIMEOUT", default=10.0)
OUTBOX_MAX_ATTEMPTS = env.int("OUTBOX_MAX_ATTEMPTS", default=8)
# The longest wait between two tries of a delivery (the backoff doubles from 1 s up to it): a
# provider back from an outage gets the queued deliveries within about this long.
OUTBOX_RETRY_MAX_SECONDS = env.float("OUTBOX_RETRY_MAX_SECONDS", default=60.0)
# The largest webhook body accepted (an email forwarded as raw MIME included).
CHANNEL_WEBHOOK_MAX_BYTES = env.int("CHANNEL_WEBHOOK_MAX_BYTES", default=10 * 1024 * 1024)

# --- Email channel (README: "Channels", "Email") ----------------------------------------------
# How often the mailboxes of email channels with an IMAP server are read (seconds).
EMAIL_POLL_SECONDS = env.float("EMAIL_POLL_SECONDS", default=30.0)
CELERY_BEAT_SCHEDULE["email-poll"] = {
    "task": "conversations.email_poll",
    "schedule": EMAIL_POLL_SECONDS,
}

# The outbox's sweep: a pending delivery overdue by more than OUTBOX_SWEEP_GRACE seconds (its
# send job lost with Redis, its worker killed) is queued again, every 30 s.
OUTBOX_SWEEP_GRACE = env.float("OUTBOX_SWEEP_GRACE", default=60.0)
CELERY_BEAT_SCHEDULE["outbox-sweep"] = {"task": "conversations.outbox_sweep", "schedule": 30.0}

# --- LLM provider (a tenant may override it in admin) ----------------------------------------
LLM_PROVIDER = env.str("LLM_PROVIDER", default="") or _devstack_value("llm_provider") or ""
LLM_BASE_URL = env.str("LLM_BASE_URL", default="") or _devstack_value("llm_base_url") or ""
LLM_API_KEY = env.str("LLM_API_KEY", default="")
LLM_MODEL = env.str("LLM_MODEL", default="") or _devstack_value("llm_model") or ""
LLM_API_VERSION = env.str("LLM_API_VERSION", default="")
LLM_CONNECT_TIMEOUT = env.float("LLM_CONNECT_TIMEOUT", default=5.0)
LLM_READ_TIMEOUT = env.float("LLM_READ_TIMEOUT", default=30.0)
LLM_DEADLINE = env.float("LLM_DEADLINE", default=120.0)
LLM_MAX_RETRIES = env.int("LLM_MAX_RETRIES", default=3)
# A tenant's own base URL may not point at a loopback, private or link-local address unless
# allowed here: CIDRs, addresses or host names (LLM_ALLOWED_PRIVATE_HOSTS), or any (…_URLS).
LLM_ALLOWED_PRIVATE_HOSTS = env.list("LLM_ALLOWED_PRIVATE_HOSTS", default=[])
LLM_ALLOW_PRIVATE_BASE_URLS = env.bool("LLM_ALLOW_PRIVATE_BASE_URLS", default=False)
# Moderation checks (per tenant: the provider's endpoint, a URL, or none): the wall-clock
# budget of one check, retries included, and its retries.
MODERATION_DEADLINE = env.float("MODERATION_DEADLINE", default=5.0)
MODERATION_MAX_RETRIES = env.int("MODERATION_MAX_RETRIES", default=1)
# The sensitive-topic classification of a question (tenants with topics only).
TOPIC_CLASSIFICATION_DEADLINE = env.float("TOPIC_CLASSIFICATION_DEADLINE", default=8.0)
# Embeddings for hybrid knowledge search (pgvector); empty: full-text search only.
LLM_EMBEDDING_MODEL = env.str("LLM_EMBEDDING_MODEL", default="")

# --- Knowledge base ---------------------------------------------------------------------------
KNOWLEDGE_MAX_FILE_BYTES = env.int("KNOWLEDGE_MAX_FILE_BYTES", default=20 * 1024 * 1024)
KNOWLEDGE_QUERY_EMBEDDING_TIMEOUT = env.float("KNOWLEDGE_QUERY_EMBEDDING_TIMEOUT", default=3.0)
KNOWLEDGE_VECTOR_MAX_DISTANCE = env.str("KNOWLEDGE_VECTOR_MAX_DISTANCE", default="") or None
# What one uploaded file may cost to parse; a file over a cap is refused with a message naming it.
KNOWLEDGE_MAX_LINE_CHARS = env.int("KNOWLEDGE_MAX_LINE_CHARS", default=20_000)
KNOWLEDGE_MAX_PDF_PAGES = env.int("KNOWLEDGE_MAX_PDF_PAGES", default=500)
KNOWLEDGE_MAX_TEXT_CHARS = env.int("KNOWLEDGE_MAX_TEXT_CHARS", default=2_000_000)
# Seconds the `knowledge` worker may spend on one uploaded file before it is stopped and the
# upload marked failed (a hard limit 30 s later kills a worker that does not stop).
KNOWLEDGE_INGEST_SOFT_TIME_LIMIT = env.float("KNOWLEDGE_INGEST_SOFT_TIME_LIMIT", default=120.0)

# --- Replies ----------------------------------------------------------------------------------
# How often streamed text is flushed to the widget (seconds): deltas are coalesced in between.
REPLY_FLUSH_INTERVAL = env.float("REPLY_FLUSH_INTERVAL", default=0.066)
# A reply job holds a lease it renews while streaming; a redelivered job waits for it to lapse.
REPLY_LEASE_SECONDS = env.float("REPLY_LEASE_SECONDS", default=15.0)
# A finished reply whose save finds the database unreachable (a restart) is saved again, with
# backoff, for this long before the job gives up and is retried from the start.
REPLY_SAVE_RETRY_SECONDS = env.float("REPLY_SAVE_RETRY_SECONDS", default=60.0)
# Tokens of history sent to the model: the default of a new tenant's history_token_budget
# (each tenant's own value is set in admin).
HISTORY_TOKEN_BUDGET = env.int("HISTORY_TOKEN_BUDGET", default=3000)

# --- Per-tenant usage limits (supportbot/tenants/limits.py) ---------------------------------
# A reply over its tenant's requests-a-minute or concurrency limit waits this long, then degrades.
LIMIT_WAIT_SECONDS = env.float("LIMIT_WAIT_SECONDS", default=3.0)
# Completion tokens reserved for a call that sets no max_tokens (a tenant without one).
LIMIT_RESERVE_MAX_TOKENS = env.int("LIMIT_RESERVE_MAX_TOKENS", default=2048)

# --- Widget edge limits -----------------------------------------------------------------------
WIDGET_MAX_FRAME_BYTES = 64 * 1024
WIDGET_HELLO_TIMEOUT = env.float("WIDGET_HELLO_TIMEOUT", default=5.0)
WIDGET_MAX_CONNECTIONS_PER_CLIENT = env.int("WIDGET_MAX_CONNECTIONS_PER_CLIENT", default=20)
# Each open socket renews its place in the count this often (seconds); a socket not renewed
# for three intervals (its process crashed or was killed) no longer counts.
WIDGET_CONNECTION_HEARTBEAT = env.float("WIDGET_CONNECTION_HEARTBEAT", default=30.0)
WIDGET_MESSAGES_PER_MINUTE = env.int("WIDGET_MESSAGES_PER_MINUTE", default=20)
# Messages a minute through one widget key, all its visitors together (a scraped key cannot
# flood a tenant), and conversations a client address (IPv6: its /64) may start in an hour
# (counted when a conversation is stored, at its first message).
WIDGET_KEY_MESSAGES_PER_MINUTE = env.int("WIDGET_KEY_MESSAGES_PER_MINUTE", default=600)
WIDGET_CONVERSATIONS_PER_CLIENT_PER_HOUR = env.int(
    "WIDGET_CONVERSATIONS_PER_CLIENT_PER_HOUR", default=60
)
# An open socket notices that its widget key or tenant was disabled within this many seconds.
WIDGET_KEY_RECHECK_SECONDS = env.float("WIDGET_KEY_RECHECK_SECONDS", default=10.0)
# Seconds a visitor token stays valid; every `welcome` hands out a fresh one (sliding expiry).
VISITOR_TOKEN_MAX_AGE = env.int("VISITOR_TOKEN_MAX_AGE", default=30 * 24 * 3600)

# --- Websocket frames (widget and agent sockets) -----------------------------------------------
# Each socket's frame throttle: a token bucket of SOCKET_FRAME_BURST frames refilled at
# SOCKET_FRAMES_PER_SECOND; a socket that floods past it is closed with 4429.
SOCKET_FRAME_BURST = env.int("SOCKET_FRAME_BURST", default=20)
SOCKET_FRAMES_PER_SECOND = env.float("SOCKET_FRAMES_PER_SECOND", default=5.0)
# A socket's catch-up (`welcome.messages`, widget and agent) holds at most the newest
# CATCH_UP_MAX_MESSAGES messages; the admin transcript shows ADMIN_TRANSCRIPT_PAGE_SIZE a page.
CATCH_UP_MAX_MESSAGES = env.int("CATCH_UP_MAX_MESSAGES", default=200)
ADMIN_TRANSCRIPT_PAGE_SIZE = env.int("ADMIN_TRANSCRIPT_PAGE_SIZE", default=100)

# --- Auth, i18n, static -------------------------------------------------------------------------
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
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.path("STATIC_ROOT", default=str(VAR_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# The widget loader is fetched cross-origin by customers' pages.
WHITENOISE_ALLOW_ALL_ORIGINS = True
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = DEBUG

# --- Admin login: lockout and two-factor ------------------------------------------------------
# Axes counts failed admin logins per (client address, username); the address is REMOTE_ADDR,
# which supportbot.client_address has already resolved through TRUSTED_PROXIES (an IPv6
# client counts as its /64). Forwarding headers are never read here.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("ADMIN_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("ADMIN_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["ip_address", "username"]]
AXES_USERNAME_FORM_FIELD = "username"
AXES_CLIENT_IP_CALLABLE = "supportbot.admin_security.lockout.lockout_client_address"
AXES_IPWARE_META_PRECEDENCE_ORDER = ("REMOTE_ADDR",)
AXES_RESET_ON_SUCCESS = True
# Masked in axes' logs and its stored request data.
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "otp_token", "csrfmiddlewaretoken"]
AXES_LOCKOUT_TEMPLATE = "admin/locked_out.html"
# Staff confirm each login with a TOTP code (django-otp): required in production, optional in
# development (where a staff user who has a device is still asked for a code).
ADMIN_REQUIRE_OTP = env.bool("ADMIN_REQUIRE_OTP", default=PRODUCTION)
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="Supportbot")
OTP_ADMIN_HIDE_SENSITIVE_DATA = True  # the device admin never shows a TOTP secret

# --- Security -----------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
# Cookies stay host-only (no Domain attribute): the widget's own host (WIDGET_PUBLIC_URL) never
# receives the admin's session or CSRF cookie. Not configurable on purpose.
SESSION_COOKIE_DOMAIN = None
CSRF_COOKIE_DOMAIN = None
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True  # no script of ours reads it: forms carry the token
# A staff login lasts a working day, not Django's two weeks.
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "strict-origin-when-cross-origin"
# Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (CIDRs or
# addresses; empty: nobody's). supportbot.client_address resolves the client and the scheme
# from them; Django's SECURE_PROXY_SSL_HEADER stays unset, as the scheme is already resolved.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])
try:
    trusted_networks_parse(TRUSTED_PROXIES)
except ValueError as exc:
    raise environ.ImproperlyConfigured(str(exc)) from exc
if PRODUCTION:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # The __Host- prefix makes browsers refuse these cookies unless they are Secure, host-only
    # and for the whole path: no subdomain (the widget's host included) can set or read them.
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    # Preloading is a commitment browsers ship (removal takes months): the operator opts in.
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS = ["security.W021"]  # "SECURE_HSTS_PRELOAD is not True"

# Error reports (DEBUG pages, mails to admins) hide secrets: Django's names plus every *_URL
# setting, and the password of any URL inside a setting (CACHES, CHANNEL_LAYERS...).
DEFAULT_EXCEPTION_REPORTER_FILTER = "supportbot.error_reports.SettingsRedactingFilter"

# No log line holds message text or personal data: the application logs ids and codes; the
# libraries that put a client's address or SQL parameters in their DEBUG lines stay at INFO or
# above whatever LOG_LEVEL says; and every line passes the redaction filter (emails, addresses,
# tokens and keys masked). APP_LOG_LEVEL sets the application's own loggers apart.
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
APP_LOG_LEVEL = env.str("APP_LOG_LEVEL", default="").upper() or LOG_LEVEL
_LIBRARY_LOG_LEVEL = "INFO" if LOG_LEVEL == "DEBUG" else LOG_LEVEL
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"personal_data": {"()": "supportbot.compliance.log_redaction.PersonalDataFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["personal_data"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "httpx": {"level": "WARNING"},
        "openai": {"level": "WARNING"},
        **{name: {"level": APP_LOG_LEVEL} for name in ("supportbot", "conversations", "knowledge")},
        **{
            name: {"level": _LIBRARY_LOG_LEVEL}
            for name in ("daphne", "django.channels.server", "django.db.backends", "django.server")
        },
    },
}
