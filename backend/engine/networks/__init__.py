"""Engine package networks (see docs/architecture.md)."""
