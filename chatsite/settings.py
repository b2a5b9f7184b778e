"""Settings for chatsite. Every knob is an environment variable; the README lists them all.

Defaults make a fresh clone run with no set-up (SQLite under data/, in-memory channel layer, media on local
disk). DATABASE_URL and REDIS_URL switch to PostgreSQL and channels-redis for multi-process deployments.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from csp import constants as csp
from django.core.exceptions import ImproperlyConfigured

from chatsite.env import env_bool, env_choice, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

# Production mode turns the safe defaults on (secure cookies, HSTS) and refuses to invent a SECRET_KEY.
PRODUCTION = env_bool("CHAT_PRODUCTION", False)
DEBUG = env_bool("DEBUG", False)

DATA_DIR = Path(env_str("DATA_DIR") or BASE_DIR / "data").resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        return key
    if PRODUCTION:
        raise ImproperlyConfigured("CHAT_PRODUCTION is on: set SECRET_KEY (or SECRET_KEY_FILE).")
    # Development and single-machine installs: generate once and keep it, so sessions survive restarts.
    path = DATA_DIR / "secret_key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",  # first: `manage.py runserver` then serves websockets too
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "axes",  # login throttling: see the Auth section
    "conversations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "chatsite.csp.CSPMiddleware",  # Content-Security-Policy: see the Security section
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # SQLite's "database is locked" from a view: 503 with Retry-After, never a 500 (services/db_busy.py)
    "conversations.views.errors.DatabaseBusyMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out login into our 429 page
]

ROOT_URLCONF = "chatsite.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "chatsite.asgi.application"

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
                "conversations.context_processors.site",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------------------------
SQLITE_PATH = DATA_DIR / "db.sqlite3"
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{SQLITE_PATH}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["ENGINE"] = (
        "chatsite.sqlite"  # this process's writers queue: chatsite/sqlite/base.py
    )
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets readers proceed while a generation checkpoints; IMMEDIATE avoids "database is locked"
        # upgrades from read to write transactions; the timeout waits for a writer instead of failing.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": env_int("SQLITE_BUSY_TIMEOUT", 20, minimum=1),
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channels -----------------------------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # channels-redis's pub/sub layer with its gaps closed (see conversations/engine/layers.py): one PUBLISH per
            # frame instead of channels_redis.core's eight round trips (bench/load.py --postgres).
            "BACKEND": "conversations.engine.layers.RedisPubSubChannelLayer",
            # Two connections per process: one publishes (socket_timeout: how long a batch of PUBLISHes may
            # wait for Redis before failing; redis-py 8's default is 5 s), one receives with its own timeouts.
            # Options in REDIS_URL's query string (?socket_timeout=...) take precedence.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}]},
        }
    }
else:
    # channels' in-memory layer with cheap housekeeping (see conversations/engine/layers.py): one process only.
    CHANNEL_LAYERS = {"default": {"BACKEND": "conversations.engine.layers.InMemoryChannelLayer"}}

# --- Auth ---------------------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Tests only: a fast hasher so creating users doesn't cost half a second each. Refused in production.
if env_bool("CHAT_INSECURE_FAST_PASSWORD_HASHER", False):
    if PRODUCTION:
        raise ImproperlyConfigured(
            "CHAT_INSECURE_FAST_PASSWORD_HASHER is for tests; it cannot run in production."
        )
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Login throttling (django-axes) on the site's login form and the admin's: failed logins are counted per
# username and, separately, per client address; either reaching CHAT_LOGIN_FAILURE_LIMIT locks it out for
# CHAT_LOGIN_COOLOFF_MINUTES (counted from the last failure). A locked-out attempt gets 429 and "Too many
# attempts, try again in N minutes", even with the right password. Admins unlock a user on the user's page.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out username or address
    "django.contrib.auth.backends.ModelBackend",
]
CHAT_LOGIN_FAILURE_LIMIT = env_int("CHAT_LOGIN_FAILURE_LIMIT", 10, minimum=1)
CHAT_LOGIN_COOLOFF_MINUTES = env_int("CHAT_LOGIN_COOLOFF_MINUTES", 15, minimum=1)
# The client address: REMOTE_ADDR, unless the site runs behind a TLS proxy (SECURE_PROXY_SSL_HEADER) and
# CHAT_CLIENT_IP_HEADER names the header that proxy sets (X-Real-IP, or X-Forwarded-For: its last address,
# the one the proxy itself added). Any other header a client sends is ignored (chatsite/client_ip.py).
CHAT_CLIENT_IP_HEADER = env_str("CHAT_CLIENT_IP_HEADER", "")
AXES_ENABLED = env_bool("CHAT_LOGIN_THROTTLING", True)
AXES_FAILURE_LIMIT = CHAT_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = CHAT_LOGIN_COOLOFF_MINUTES / 60  # hours, as a float: axes reads it as minutes * 60
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each on its own, not the pair
# axes' own reset on success forgets every failure from the address too (its lockout parameters are OR-ed),
# so anyone with an account could guess at another's password without end, logging in to theirs between
# rounds. A success forgets that username's failures only: services/login_limits.py.
AXES_RESET_ON_SUCCESS = False
AXES_CLIENT_IP_CALLABLE = "chatsite.client_ip.client_ip"
AXES_LOCKOUT_CALLABLE = "conversations.views.login_lockout.locked_out"
AXES_USERNAME_FORM_FIELD = "username"
AXES_VERBOSE = False  # its start-up banner and per-attempt lines; our own log says what matters
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# open: anyone may sign up; approval: new accounts wait for an admin; closed: admins create accounts.
CHAT_SIGNUP = env_choice("CHAT_SIGNUP", "approval", ("open", "approval", "closed"))

# --- I18N ---------------------------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static and media ---------------------------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT") or BASE_DIR / "staticfiles")
MEDIA_URL = "media/"  # never served publicly: attachments go through an ownership-checked view
MEDIA_ROOT = Path(env_str("MEDIA_ROOT") or DATA_DIR / "media")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Security -----------------------------------------------------------------------------------------------
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", PRODUCTION)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", PRODUCTION)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if PRODUCTION else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy (django-csp 4). Model output is untrusted: even if something slipped past the
# sanitiser, no inline script, event handler, javascript: URL, plugin, <base> or framing could run.
# - script-src: our own files, plus a per-request nonce for the one inline <script type="importmap"> that
#   maps module paths to their hashed static names. No 'unsafe-inline', no 'unsafe-eval'.
# - connect-src: 'self'; chatsite.csp.CSPMiddleware adds ws:// and wss:// of the request's own host, for
#   browsers that don't count websockets of the same origin as 'self'.
# - img-src: no remote images (an image URL in an answer can't beacon data out); data:/blob: for previews.
# - style-src 'self' only: no vendored library needs inline styles.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp.SELF],
        "script-src": [csp.SELF, csp.NONCE],
        "connect-src": [csp.SELF],
        "img-src": [csp.SELF, "data:", "blob:"],
        "style-src": [csp.SELF],
        "font-src": [csp.SELF],
        "object-src": [csp.NONE],
        "base-uri": [csp.NONE],
        "form-action": [csp.SELF],
        "frame-ancestors": [csp.NONE],
    },
}

# Provider keys are encrypted with these Fernet keys (comma-separated; the first encrypts, all decrypt, so
# keys can be rotated). Unset: a key derived from SECRET_KEY, with a warning at start-up.
CHAT_ENCRYPTION_KEY = env_str("CHAT_ENCRYPTION_KEY")

# --- Upstream providers -------------------------------------------------------------------------------------
CHAT_DEFAULT_MODEL = env_str("CHAT_DEFAULT_MODEL")
# Sent to OpenRouter so requests are attributed to this site in its dashboard.
CHAT_SITE_URL = env_str("CHAT_SITE_URL", "http://127.0.0.1:8000")
CHAT_SITE_NAME = env_str("CHAT_SITE_NAME", "Chatsite")
CHAT_CONNECT_TIMEOUT = env_float("CHAT_CONNECT_TIMEOUT", 5.0, minimum=0.1)
CHAT_FIRST_TOKEN_TIMEOUT = env_float("CHAT_FIRST_TOKEN_TIMEOUT", 60.0, minimum=0.1)
CHAT_STALL_TIMEOUT = env_float("CHAT_STALL_TIMEOUT", 60.0, minimum=0.1)
CHAT_TOTAL_TIMEOUT = env_float("CHAT_TOTAL_TIMEOUT", 600.0, minimum=1)
CHAT_MAX_RETRIES = env_int("CHAT_MAX_RETRIES", 2, minimum=0)
CHAT_RETRY_MAX_DELAY = env_float("CHAT_RETRY_MAX_DELAY", 20.0, minimum=0)
# Connections to providers, per process: one per streaming answer (more answers than this wait for one), and
# how many idle ones are kept for the next turns (each saves a TLS handshake).
CHAT_UPSTREAM_MAX_CONNECTIONS = env_int("CHAT_UPSTREAM_MAX_CONNECTIONS", 1000, minimum=1)
CHAT_UPSTREAM_KEEPALIVE = env_int("CHAT_UPSTREAM_KEEPALIVE", 100, minimum=0)

# --- Realtime engine ----------------------------------------------------------------------------------------
# Streamed text is coalesced into frames at most this often, or sooner when this many characters wait.
CHAT_FRAME_INTERVAL = env_float("CHAT_FRAME_INTERVAL", 0.04, minimum=0.005)
# ...but with few answers running, frames of one answer are at least this long apart divided by their number
# (0.2: 200 ms for a lone answer, 100 ms for two...): a quiet process pays about a millisecond to wake for a
# frame, and the browser reveals each frame's text smoothly over the interval. 0: always CHAT_FRAME_INTERVAL.
CHAT_QUIET_FRAME_INTERVAL = env_float("CHAT_QUIET_FRAME_INTERVAL", 0.2, minimum=0)
CHAT_FRAME_MAX_CHARS = env_int("CHAT_FRAME_MAX_CHARS", 2000, minimum=1)
# Python's cycle collector runs after this many net allocations in a serving process (Python's default: 700),
# and what start-up loaded is frozen out of its runs (conversations/engine/__init__.py). 0: Python's defaults.
CHAT_GC_GEN0_THRESHOLD = env_int("CHAT_GC_GEN0_THRESHOLD", 50_000, minimum=0)
# The partial answer is saved this often (and the heartbeat with it), never per token.
CHAT_CHECKPOINT_INTERVAL = env_float("CHAT_CHECKPOINT_INTERVAL", 1.0, minimum=0.05)
# A generation whose heartbeat is older than this belongs to a dead process: it is marked interrupted.
CHAT_STALE_AFTER = env_float("CHAT_STALE_AFTER", 30.0, minimum=0.5)
CHAT_SWEEP_INTERVAL = env_float("CHAT_SWEEP_INTERVAL", 30.0, minimum=0.5)
# On SIGTERM, running answers get this many seconds to finish before they are saved as interrupted.
CHAT_SHUTDOWN_GRACE = env_float("CHAT_SHUTDOWN_GRACE", 10.0, minimum=0)
CHAT_TURNS_PER_MINUTE = env_int("CHAT_TURNS_PER_MINUTE", 20, minimum=0)  # 0: no limit
# Per user: open websockets in one process (more get `too_many_sockets` and close 4429), and answers being
# written at once in any process (a turn past it gets `too_many_running`). 0: no limit.
CHAT_MAX_SOCKETS_PER_USER = env_int("CHAT_MAX_SOCKETS_PER_USER", 20, minimum=0)
CHAT_MAX_RUNNING_PER_USER = env_int("CHAT_MAX_RUNNING_PER_USER", 3, minimum=0)
CHAT_MAX_MESSAGE_CHARS = env_int("CHAT_MAX_MESSAGE_CHARS", 100_000, minimum=1)
# Conversation history: deleted chats stay restorable this long (then `manage.py purge_deleted` removes them),
# the newest messages a long conversation opens with, and the largest file an import accepts.
CHAT_DELETED_RETENTION_DAYS = env_int("CHAT_DELETED_RETENTION_DAYS", 30, minimum=0)
CHAT_HISTORY_PAGE_MESSAGES = env_int("CHAT_HISTORY_PAGE_MESSAGES", 200, minimum=10)
CHAT_IMPORT_MAX_BYTES = env_int("CHAT_IMPORT_MAX_BYTES", 512 * 1024 * 1024, minimum=1024)
# Imports (services/imports/): a zip may unpack to at most this many bytes in all, and no member may be
# compressed more than CHAT_IMPORT_MAX_RATIO times (zip bombs); at most CHAT_IMPORT_CONCURRENCY imports run at
# once on the site (one per user; more wait their turn); uploads wait in CHAT_IMPORT_DIR while they run; a job
# whose worker has been silent for CHAT_IMPORT_STALE_AFTER seconds died with its process and is undone.
CHAT_IMPORT_MAX_UNCOMPRESSED_BYTES = env_int(
    "CHAT_IMPORT_MAX_UNCOMPRESSED_BYTES", 4 * 1024 * 1024 * 1024, minimum=1024
)
CHAT_IMPORT_MAX_RATIO = env_int("CHAT_IMPORT_MAX_RATIO", 200, minimum=2)
CHAT_IMPORT_CONCURRENCY = env_int("CHAT_IMPORT_CONCURRENCY", 2, minimum=1)
CHAT_IMPORT_DIR = Path(env_str("CHAT_IMPORT_DIR") or DATA_DIR / "imports")
CHAT_IMPORT_STALE_AFTER = env_float("CHAT_IMPORT_STALE_AFTER", 120.0, minimum=1)
# "process": each import runs in a `manage.py run_import` child process at a lower CPU priority (niceness
# CHAT_IMPORT_NICE), away from the web process's GIL and memory; "thread": in a thread of the web process.
CHAT_IMPORT_WORKER = env_str("CHAT_IMPORT_WORKER") or "process"
if CHAT_IMPORT_WORKER not in ("process", "thread"):
    raise ImproperlyConfigured("CHAT_IMPORT_WORKER is process or thread.")
CHAT_IMPORT_NICE = env_int("CHAT_IMPORT_NICE", 10, minimum=0)
CHAT_MAX_FRAME_BYTES = env_int("CHAT_MAX_FRAME_BYTES", 262_144, minimum=1024)
# Site-wide quotas per user; 0 means no limit. An admin can override each one per user (Users → Quota).
# Days and months follow TIME_ZONE. Tokens count prompt plus completion.
CHAT_USER_MONTHLY_BUDGET = env_float("CHAT_USER_MONTHLY_BUDGET", 0.0, minimum=0)  # USD per calendar month
CHAT_USER_DAILY_BUDGET = env_float("CHAT_USER_DAILY_BUDGET", 0.0, minimum=0)  # USD per day
CHAT_USER_MONTHLY_TOKENS = env_int("CHAT_USER_MONTHLY_TOKENS", 0, minimum=0)
CHAT_USER_DAILY_TOKENS = env_int("CHAT_USER_DAILY_TOKENS", 0, minimum=0)
# Users may store their own API key for a provider (settings page); it is used for their turns only.
CHAT_ALLOW_PERSONAL_KEYS = env_bool("CHAT_ALLOW_PERSONAL_KEYS", False)
# The model that writes conversation titles (a canonical id such as gpt-4o-mini); empty: the chat's own model.
CHAT_TITLE_MODEL = env_str("CHAT_TITLE_MODEL", "")

# --- Images in prompts ------------------------------------------------------------------------------------
# Uploads are checked by content (PNG, JPEG, WEBP, GIF, HEIC), re-encoded without metadata and downscaled to
# what the provider uses; see conversations/services/images.py.
CHAT_MAX_IMAGES_PER_TURN = env_int("CHAT_MAX_IMAGES_PER_TURN", 4, minimum=1)
CHAT_MAX_IMAGE_BYTES = env_int("CHAT_MAX_IMAGE_BYTES", 20 * 1024 * 1024, minimum=1024)  # per uploaded file
CHAT_MAX_IMAGE_PIXELS = env_int("CHAT_MAX_IMAGE_PIXELS", 50_000_000, minimum=1)  # against decompression bombs
CHAT_IMAGE_DETAIL = env_choice("CHAT_IMAGE_DETAIL", "auto", ("auto", "low", "high"))
CHAT_IMAGE_MAX_SIDE = env_int("CHAT_IMAGE_MAX_SIDE", 2048, minimum=64)  # fit within this square...
CHAT_IMAGE_SHORT_SIDE = env_int("CHAT_IMAGE_SHORT_SIDE", 768, minimum=64)  # ...then the short side to this
# false: only the newest message's images go to the model (older turns keep their text), to save tokens.
CHAT_KEEP_OLD_IMAGES = env_bool("CHAT_KEEP_OLD_IMAGES", True)
# Uploads never sent with a message are deleted by `manage.py purge_uploads` after this many hours.
CHAT_UPLOAD_MAX_AGE_HOURS = env_int("CHAT_UPLOAD_MAX_AGE_HOURS", 24, minimum=1)
# Images uploaded but not yet sent, per user: more waiting is refused until some are sent or removed.
CHAT_MAX_PENDING_UPLOADS = env_int("CHAT_MAX_PENDING_UPLOADS", 20, minimum=1)
# Request bodies: files over 2.5 MB spool to a temporary file instead of memory; form fields (not files) are
# capped at 2.5 MB. The image byte limit itself is enforced while the upload is read (views/uploads.py).
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_NUMBER_FILES = 10

# --- Metrics: GET /metrics for Prometheus (docs/deployment.md, "Metrics") ---------------------------------
# The bearer token the scraper sends (or CHAT_METRICS_TOKEN_FILE). Unset: /metrics answers 404 to everyone.
CHAT_METRICS_TOKEN = env_str("CHAT_METRICS_TOKEN") or ""
# Several daphne processes serving one site add up their metrics through files in one directory they all
# share (prometheus-client's multi-process mode): PROMETHEUS_MULTIPROC_DIR names it, or
# CHAT_METRICS_MULTIPROCESS=1 uses $DATA_DIR/metrics. Neither (one process): figures are kept in memory.
CHAT_METRICS_MULTIPROCESS = env_bool("CHAT_METRICS_MULTIPROCESS", False)
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR") or (
    str(DATA_DIR / "metrics") if CHAT_METRICS_MULTIPROCESS else ""
)
if PROMETHEUS_MULTIPROC_DIR:
    PROMETHEUS_MULTIPROC_DIR = str(Path(PROMETHEUS_MULTIPROC_DIR).resolve())

# --- Logging: everything to stdout, the way containers and systemd expect --------------------------------
LOG_LEVEL = env_choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "plain"}
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["stdout"], "level": LOG_LEVEL, "propagate": False},
        # httpx logs every request URL at INFO; keep it quiet so nothing sensitive lands in logs by accident.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        # django-axes: failures and lock-outs are warnings (kept); its per-attempt housekeeping is info.
        "axes": {"level": "WARNING"},
    },
}
