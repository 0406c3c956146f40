"""Compose: YAML files turned into Docker Engine API calls through backend.api."""
