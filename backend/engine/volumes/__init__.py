"""Engine package volumes (see docs/architecture.md)."""
