"""The Patronus operator: four controllers on the runtime, and the configuration that runs them.

A map for a newcomer:

- ``site/``, ``mesh/``, ``path/``, ``policy/``: one folder per kind, each with its ``reconciler`` (the
  reads and writes, top-down) beside the pure computation it calls (``status``, ``plan``, ``aggregate``);
  ``site/children/`` builds the objects a Site owns and ``site/kinds.py`` is the one table of them;
- ``reconcile/``: what every reconciler shares (the opening, no-op-aware apply, conditions, parse memo);
- ``wiring/``: the caches and their indexes, which change concerns which object (mappers, filters), and
  ``register``, which puts the controllers on a manager;
- ``context``, ``indexes``, ``gauges``, ``config`` (and ``config_values``), and ``main``: the
  ``patronus operator run`` command.
"""
