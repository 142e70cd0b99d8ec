from __future__ import annotations

from django.urls import path

from mysite import views

urlpatterns = [
    path("hello/", views.hello),
    path("guestbook/", views.guestbook),
]
