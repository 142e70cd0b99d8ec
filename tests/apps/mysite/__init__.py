"""A tiny real Django project (also its only app): a guestbook behind CSRF protection.

``mysite.wsgi:application`` is what the server loads. The sqlite database lives in
``$MYSITE_DATA_DIR`` (the tests point it at a temporary directory; a fresh temporary directory
is used when it is unset) and is migrated when the WSGI module is imported, under a file lock so
several worker processes starting at once do not race each other.
"""
