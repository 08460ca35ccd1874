"""The ``patronus`` command."""
