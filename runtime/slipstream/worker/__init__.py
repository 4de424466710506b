"""What runs in worker processes: the worker main loop, the fork server, reload, blob fetch."""
