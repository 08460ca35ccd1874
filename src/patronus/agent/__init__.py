"""The site agent: a Site's data plane (WireGuard, policy routing, QoS), its path probes and failover, and
its reports.

Where each part lives:

- ``agent`` (:class:`~patronus.agent.agent.SiteAgent`): wiring, supervised tasks, health and metrics
  servers, shutdown; ``core``: the data-plane loop (apply configurations, act on every check);
- ``configsource``: the ConfigMap it is told about, validated into a typed ``AgentConfig``;
  ``sitewatch``: its Site, whose deletion ends the agent; ``keys``: the private key (file or Secret);
- pure decisions: ``desired`` (the plan a configuration asks for), ``path_monitor`` and ``detection``
  (when to probe, when a path is down, a check's loss window and the "never answered" state),
  ``failover`` (hysteresis per policy), ``steering`` (policies and unmatched traffic); ``probe_protocol``
  and ``probe_stats`` (the wire format and one check's statistics);
- I/O: ``prober`` and ``probing`` (UDP probes and the responder), ``applier`` (the kernel, through
  ``dataplane/``), ``switcher`` (a policy moved only once the kernel took it), ``report_queue`` and
  ``reporting`` (status, never in the data plane's way), ``metrics`` (the Prometheus exporter);
- ``tasks``: every background job named, supervised and restarted.
"""
