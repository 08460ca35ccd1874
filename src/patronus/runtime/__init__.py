"""Patronus's small asyncio controller runtime, in the mould of client-go and controller-runtime.

Building blocks: a :mod:`clock` that tests can drive, client-go's :mod:`ratelimit` rate limiters and
:mod:`workqueue`, :mod:`resource` kinds and paths, the in-memory :mod:`cache` (an ``Indexer``) and the
:mod:`informer` (reflector + cache + event handlers) that keeps it in step with the API server.
"""
