from __future__ import annotations

from django.contrib import admin
from django.urls import path

from mysite import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("hello/", views.hello),
    path("guestbook/", views.guestbook),
    path("upload/", views.upload),
    path("stream/", views.stream),
    path("download/", views.download),
    path("shared/", views.shared_page),
    path("login/", views.login),
    path("account/", views.account),
]
