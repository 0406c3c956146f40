"""Qt item models over plain rows (dataclasses built from backend.api types)."""
