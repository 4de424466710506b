"""What runs in `slipstream serve`: the HTTP app, the data channel server, pools, store, environments, backends.

Internal: not part of the public API, which is what `slipstream` and `slipstream.errors` export
(docs/architecture.md shows the rooms and their import rules).
"""
