"""HTTP server for the Docker Engine API. Calls the engine; holds no business logic."""
