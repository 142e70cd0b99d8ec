from __future__ import annotations

from django.db import models


class Entry(models.Model):
    message = models.CharField(max_length=200)
