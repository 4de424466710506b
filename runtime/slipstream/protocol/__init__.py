"""Wire format, IPC framing, shared memory, error records: imports nothing else of slipstream."""
