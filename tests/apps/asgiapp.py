"""ASGI apps, which maitred (a WSGI server) must refuse at start rather than fail every request.

``app``       an ``async def app(scope, receive, send)`` function
``instance``  an object whose ``__call__`` is ``async def`` (Starlette, Django's ASGIHandler)
"""

from __future__ import annotations

from typing import Any


async def app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("an ASGI app must never be called by maitred")


class ASGIApp:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("an ASGI app must never be called by maitred")


instance = ASGIApp()
