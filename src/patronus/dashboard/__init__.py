"""The dashboard: a read-only web UI of one namespace's SD-WAN (topology, sites, paths, policies, events).

:mod:`~patronus.dashboard.watcher` keeps a live picture through the runtime's informers,
:mod:`~patronus.dashboard.server` serves it (aiohttp, Server-Sent Events),
:mod:`~patronus.dashboard.auth` lets in whom Kubernetes RBAC lets list Sites, and
:mod:`~patronus.dashboard.app` runs it all (``patronus dashboard``). The browser code and the pinned
libraries it draws with (Cytoscape.js, uPlot) are in ``static/``.
"""
