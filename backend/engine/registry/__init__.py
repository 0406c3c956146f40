"""Engine package registry (see docs/architecture.md)."""
