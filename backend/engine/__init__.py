"""The container engine: one service per resource, no HTTP."""
