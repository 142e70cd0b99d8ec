"""Worker processes: threads that each serve one request at a time over their own link."""
