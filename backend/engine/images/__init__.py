"""Engine package images (see docs/architecture.md)."""
