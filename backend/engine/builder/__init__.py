"""Engine package builder (see docs/architecture.md)."""
