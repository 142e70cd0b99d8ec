"""The front: owns client connections, parses HTTP, dispatches to worker threads."""
