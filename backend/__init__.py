"""Berth backend: the engine, its HTTP server, the VM machine manager and the API clients."""

import sys

# httpx imports its own command line (httpx._main, which loads rich and click, about 5 MB) whenever
# those are installed. Berth never uses it: keep it out of berthd and the berth CLI.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
