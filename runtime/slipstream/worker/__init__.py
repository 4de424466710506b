"""What runs in worker processes: the worker main loop, the fork server, reload, blob fetch.

Internal: not part of the public API, which is what `slipstream` and `slipstream.errors` export
(docs/architecture.md shows the rooms and their import rules).
"""
