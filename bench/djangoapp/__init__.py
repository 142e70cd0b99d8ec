"""A tiny Django project for the benchmark's "realistic row": one view, one template, one query.

Settings live in code (wsgi.py); the sqlite database is made by the harness (db.py) before any
server starts, so worker processes never race to create it.
"""
