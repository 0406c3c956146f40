"""Engine package containers (see docs/architecture.md)."""
