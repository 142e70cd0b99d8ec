"""URLs of the benchmark's Django project (mounted under /django/ by bench.app)."""

from __future__ import annotations

from django.urls import path

from bench.djangoapp.views import cached_items, items

urlpatterns = [path("django/", items), path("django/cached/", cached_items)]
