from __future__ import annotations

import hashlib
import os

from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.cache import cache_control
from django.views.decorators.csrf import csrf_exempt

from mysite.models import Entry
from mysite.payload import download_bytes


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse("Hello from Django", content_type="text/plain")


def guestbook(request: HttpRequest) -> HttpResponse:
    """GET: the form (with its CSRF token). POST: store the message, report its id."""
    if request.method == "POST":
        entry = Entry.objects.create(message=request.POST["message"])
        return HttpResponse(f"saved #{entry.pk}: {entry.message}", content_type="text/plain")
    return render(request, "mysite/guestbook.html", {"count": Entry.objects.count()})


@csrf_exempt
def upload(request: HttpRequest) -> HttpResponse:
    """POST a multipart file `data`: its size and sha256, read from where Django put it."""
    digest = hashlib.sha256()
    uploaded = request.FILES["data"]
    for block in uploaded.chunks():
        digest.update(block)
    return HttpResponse(f"{uploaded.size} {digest.hexdigest()}", content_type="text/plain")


def stream(request: HttpRequest) -> StreamingHttpResponse:
    """`?n=` numbered lines, one per chunk: a response whose length nobody knows in advance."""
    count = int(request.GET.get("n", "100"))
    return StreamingHttpResponse(
        (f"line {i}\n".encode() for i in range(count)), content_type="text/plain"
    )


def download(request: HttpRequest) -> FileResponse:
    """`?size=` bytes of a file made once in the data directory, as a FileResponse (which goes
    out through wsgi.file_wrapper)."""
    size = int(request.GET.get("size", "1048576"))
    path = settings.DATA_DIR / f"download-{size}.bin"
    if not path.exists():
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(download_bytes(size))
        partial.replace(path)
    return FileResponse(open(path, "rb"), content_type="application/octet-stream")


def _count_call(name: str) -> int:
    """Append to a file in the data directory: tests count the requests that reached Django."""
    with open(settings.DATA_DIR / f"{name}-calls", "a+") as calls:
        calls.write("call\n")
        calls.seek(0)
        return len(calls.readlines())


@cache_control(s_maxage=60)
def shared_page(request: HttpRequest) -> HttpResponse:
    """A page a shared cache may keep a minute; it greets the session's user, so reading the
    session makes Django add Vary: Cookie."""
    user = request.session.get("user", "anonymous")
    return HttpResponse(f"page for {user}, call {_count_call('shared')}", content_type="text/plain")


def login(request: HttpRequest) -> HttpResponse:
    """`?name=`: a session for that user (Set-Cookie: sessionid)."""
    request.session["user"] = request.GET["name"]
    return HttpResponse(f"logged in as {request.GET['name']}", content_type="text/plain")


def account(request: HttpRequest) -> HttpResponse:
    """A page that uses the session and says nothing of caching."""
    request.session["visits"] = visits = request.session.get("visits", 0) + 1
    user = request.session.get("user", "anonymous")
    text = f"account of {user}, visit {visits}, call {_count_call('account')}"
    return HttpResponse(text, content_type="text/plain")
