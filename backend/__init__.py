"""Berth backend: the engine, its HTTP server, the VM machine manager and the API clients."""
