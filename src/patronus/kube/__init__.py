"""Talking to the Kubernetes API: the few helpers Patronus needs on top of lightkube."""
