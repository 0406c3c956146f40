"""The client contract: wire types, errors and the engine client. Imports nothing else of backend."""
