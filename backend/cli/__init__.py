"""The berth command line, a client of backend.api."""
