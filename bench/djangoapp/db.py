"""Creates the benchmark's sqlite database with the standard library (no Django needed)."""

from __future__ import annotations

import random
import sqlite3

TABLE = "djangoapp_item"
# Enough rows that the query must use its index, few enough to build in milliseconds.
ROWS = 5_000
CATEGORIES = 50
# A fixed seed: every run and every server reads the same data.
SEED = 3


def create_database(path: str) -> None:
    rng = random.Random(SEED)
    rows = [
        (f"item {i}", rng.randrange(100, 100_000) / 100, i % CATEGORIES, f"Item number {i}")
        for i in range(ROWS)
    ]
    with sqlite3.connect(path) as db:
        db.execute(
            f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL,"
            " price REAL NOT NULL, category INTEGER NOT NULL, description TEXT NOT NULL)"
        )
        db.execute(f"CREATE INDEX {TABLE}_category ON {TABLE} (category, price)")
        db.executemany(
            f"INSERT INTO {TABLE} (name, price, category, description) VALUES (?, ?, ?, ?)", rows
        )
