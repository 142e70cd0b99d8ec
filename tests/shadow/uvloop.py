"""Hides the installed uvloop: a server started with this directory first on PYTHONPATH runs its
front on the standard asyncio loop (maitred.front.main.new_event_loop falls back to it)."""

raise ImportError("uvloop is hidden by tests/shadow to test the asyncio fallback")
