"""The benchmark's Django view: a filtered, ordered query rendered through a template."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import cache_control

from bench.djangoapp.db import CATEGORIES
from bench.djangoapp.models import Item

# Rows per page: about what a real list page shows.
PAGE_ROWS = 20


def items(request: HttpRequest) -> HttpResponse:
    try:
        category = int(request.GET.get("category", "7")) % CATEGORIES
    except ValueError:
        category = 0
    rows = Item.objects.filter(category=category).order_by("-price")[:PAGE_ROWS]
    return render(request, "djangoapp/items.html", {"category": category, "items": rows})


# The same page, marked for shared caches for a minute (the "cached Django page" scenario):
# what a site's anonymous list page says when a cache in front may keep it.
cached_items = cache_control(s_maxage=60)(items)
