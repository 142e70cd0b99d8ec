"""The one model; its table is created by bench.djangoapp.db, not by migrations."""

from __future__ import annotations

from django.db import models


class Item(models.Model):
    name = models.CharField(max_length=100)
    price = models.FloatField()
    category = models.IntegerField()
    description = models.TextField()

    class Meta:
        app_label = "djangoapp"
        managed = False
