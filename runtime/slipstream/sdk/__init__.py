"""What runs in the user's process: the client, the session, sync, call forms, the dev loop.

Internal: not part of the public API, which is what `slipstream` and `slipstream.errors` export
(docs/architecture.md shows the rooms and their import rules).
"""
