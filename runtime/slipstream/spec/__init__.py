"""GPU catalog, model sizes, endpoint spec validation and their data files: imports nothing else of slipstream."""
