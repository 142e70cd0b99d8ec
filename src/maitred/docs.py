"""Write docs/settings.md from the settings table: `python -m maitred.docs [PATH]`."""

from __future__ import annotations

import sys

from maitred.config import settings_markdown

if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else "docs/settings.md"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(settings_markdown())
