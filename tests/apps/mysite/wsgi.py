"""WSGI entry point; migrates the database once, whichever worker process gets there first."""

from __future__ import annotations

import fcntl
import os

from django.core.handlers.wsgi import WSGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")


def migrated_application() -> WSGIHandler:
    from django.conf import settings
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application
    from django.db import connections

    application = get_wsgi_application()
    data_dir = settings.DATA_DIR
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "migrate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        call_command("migrate", interactive=False, verbosity=0)
    # With --preload this runs in the master before it forks: a sqlite connection must not be
    # shared across fork, so each worker opens its own on first use.
    connections.close_all()
    return application


application = migrated_application()
