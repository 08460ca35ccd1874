"""The Policy controller: ``references`` (can it work), ``aggregate`` (the sites' reports, pure) and
``reconciler``."""
