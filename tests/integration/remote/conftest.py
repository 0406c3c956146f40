"""The remote engines rig (tests/fixtures/remote_engines.py) for every test in this directory."""

from tests.fixtures.remote_engines import remote_engines

__all__ = ["remote_engines"]
