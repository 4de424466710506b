"""GPU catalog, model sizes, endpoint spec validation and their data files: imports nothing else of slipstream.

Internal: not part of the public API, which is what `slipstream` and `slipstream.errors` export
(docs/architecture.md shows the rooms and their import rules).
"""
