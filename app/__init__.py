"""Berth desktop app (PySide6). Talks to the backend only through ``backend.api``."""
