"""Minimal Django settings for the Channels baseline.

No database, no sessions, no auth middleware: the consumer checks the JWT
itself.  The channel layer is Channels' InMemoryChannelLayer with its default
capacity and expiry (nothing tuned for the benchmark).
"""

import os

SECRET_KEY = "bench-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["channels"]
MIDDLEWARE = []
ROOT_URLCONF = "bench.baselines.channels_app.urls"
ASGI_APPLICATION = "bench.baselines.channels_app.asgi.application"
DATABASES = {}
USE_TZ = True
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
JWT_SECRET = os.environ.get("JWT_SECRET", "bench-secret")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
