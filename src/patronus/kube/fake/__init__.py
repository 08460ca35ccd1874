"""An in-memory API server behind the :class:`~patronus.kube.client.KubeClient` protocol, for unit tests.

It keeps what controllers depend on, the way kube-apiserver does it:

- objects get a ``uid``, a ``creationTimestamp``, one global ``resourceVersion`` counter (bumped only
  when an object really changes, so a no-op apply is no write), and ``generation`` bumped when anything
  but metadata and status changes;
- kinds with a status subresource (our CRDs, Deployments, Services, PVCs, Namespaces) ignore ``status``
  on the main resource and everything but ``status`` on the subresource;
- server-side apply tracks the fields each field manager set: a manager's apply removes the fields it set
  before and leaves out now (unless another manager also owns them), takes over fields others own with
  ``force``, and conflicts (409) without it. Lists are atomic, as an untyped schema makes them;
- ``replace`` checks ``resourceVersion`` (409 when stale), ``create`` refuses a taken name (409
  AlreadyExists) and fills ``generateName``, ``delete`` honours finalizers (``deletionTimestamp``) and,
  with ``garbage_collect``, removes dependents by owner reference as kube-controller-manager would;
- ``list_page`` filters by label and field selectors (``=``, ``==``, ``!=``, existence) and pages with
  continue tokens; ``watch`` replays events after a resourceVersion, then follows new ones, and raises
  :class:`~patronus.kube.errors.GoneError` for a version older than the history it keeps (``compact()``).

Every request is recorded in :attr:`FakeKube.requests`, so a test can say "this reconcile writes exactly
these" with :meth:`FakeKube.writes`. :meth:`FakeKube.fail_next` injects an error for the next matching
request. Not modelled: admission (schemas, CEL, RBAC), defaulting, and anything the tests against the real
API server cover.

The parts: :mod:`.server` (:class:`FakeKube`, the verbs and the test helpers), :mod:`.store` (objects,
resourceVersions, history, garbage collection), :mod:`.apply` (status scopes, server-side apply, merge
patch), :mod:`.selectors` and :mod:`.requests` (the request log's records, injected failures).
"""

from patronus.kube.errors import KubeError
from patronus.kube.fake.apply import merge_patch
from patronus.kube.fake.requests import Request
from patronus.kube.fake.selectors import matches_fields, matches_labels
from patronus.kube.fake.server import FakeKube

__all__ = ["FakeKube", "KubeError", "Request", "matches_fields", "matches_labels", "merge_patch"]
