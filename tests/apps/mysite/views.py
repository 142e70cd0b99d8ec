from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from mysite.models import Entry


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse("Hello from Django", content_type="text/plain")


def guestbook(request: HttpRequest) -> HttpResponse:
    """GET: the form (with its CSRF token). POST: store the message, report its id."""
    if request.method == "POST":
        entry = Entry.objects.create(message=request.POST["message"])
        return HttpResponse(f"saved #{entry.pk}: {entry.message}", content_type="text/plain")
    return render(request, "mysite/guestbook.html", {"count": Entry.objects.count()})
