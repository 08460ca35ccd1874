"""The pytest plugin: fixtures over :mod:`patronus.controlplane` for tests against a real API server."""
