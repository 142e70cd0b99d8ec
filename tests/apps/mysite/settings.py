"""Django settings for the fixture project (test-only: fixed secret key, no debug)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
# Django reads settings from the environment at import time by design; this is a fixture app.
# Without MYSITE_DATA_DIR each process would get its own directory, so tests always set it.
DATA_DIR = Path(os.environ.get("MYSITE_DATA_DIR") or tempfile.mkdtemp(prefix="mysite-"))

SECRET_KEY = "fixture-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = ["mysite"]
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {},
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(DATA_DIR / "db.sqlite3"),
        # Worker processes write concurrently; sqlite serialises writers, so wait for the lock
        # instead of failing with "database is locked".
        "OPTIONS": {"timeout": 20},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
LOGGING_CONFIG = None
