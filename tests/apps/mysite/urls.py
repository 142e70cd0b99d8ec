from __future__ import annotations

from django.contrib import admin
from django.urls import path

from mysite import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("hello/", views.hello),
    path("guestbook/", views.guestbook),
]
