"""Registry client: pull and push images over the OCI distribution API, credentials, search.

``client.py`` holds :class:`~backend.engine.registry.client.RegistryClient` and re-exports the data
types of ``manifest.py`` (descriptors, manifests, platform matching) and the errors of ``errors.py``;
``auth.py`` reads and writes Docker's ``config.json`` and parses auth challenges.
"""
