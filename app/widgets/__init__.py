"""Reusable widgets: the error banner, the log view, the terminal."""
