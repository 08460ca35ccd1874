"""The Mesh controller: ``plan`` computes the Paths, their difference to what exists and the status
(no writes); ``reconciler`` writes; ``manifest`` builds one Path."""
