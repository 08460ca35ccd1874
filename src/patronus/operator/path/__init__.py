"""The Path controller: ``status`` (pure) and ``reconciler``."""
