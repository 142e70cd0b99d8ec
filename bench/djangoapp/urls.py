"""URLs of the benchmark's Django project (mounted under /django/ by bench.app)."""

from __future__ import annotations

from django.urls import path

from bench.djangoapp.views import items

urlpatterns = [path("django/", items)]
