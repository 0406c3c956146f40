"""berth-runtime: an OCI runtime (runc command line) built on Linux namespaces.

Knows nothing of images, names or HTTP: its input is an OCI bundle."""
