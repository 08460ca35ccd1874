"""The Site controller and everything a Site owns.

``reconciler`` reads top-down and calls, in order: ``keys`` (key material), ``addresses`` (the overlay
address allocation), ``peers`` (the sites it peers with, from operator-owned data), ``render`` (the
agent configuration, memoised), ``status`` (pure) and ``applier`` (the children, in two waves, with the
status). ``children`` builds the manifests and ``kinds`` is the one table of child kinds.
"""
