"""Django settings in code and the WSGI handler bench.app mounts under /django/."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings

HERE = os.path.dirname(os.path.abspath(__file__))


def make_application() -> Any:
    import django
    from django.core.wsgi import get_wsgi_application

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="benchmark-only-not-secret",
            ALLOWED_HOSTS=["127.0.0.1", "localhost"],
            ROOT_URLCONF="bench.djangoapp.urls",
            INSTALLED_APPS=["bench.djangoapp"],
            # The middleware a typical project keeps, minus what needs more tables.
            MIDDLEWARE=[
                "django.middleware.security.SecurityMiddleware",
                "django.middleware.common.CommonMiddleware",
                "django.middleware.clickjacking.XFrameOptionsMiddleware",
            ],
            DATABASES={
                "default": {
                    "ENGINE": "django.db.backends.sqlite3",
                    "NAME": os.environ["BENCH_DJANGO_DB"],
                }
            },
            TEMPLATES=[
                {
                    "BACKEND": "django.template.backends.django.DjangoTemplates",
                    "DIRS": [os.path.join(HERE, "templates")],
                }
            ],
            USE_TZ=True,
        )
        django.setup()
    return get_wsgi_application()
