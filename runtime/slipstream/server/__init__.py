"""What runs in `slipstream serve`: the HTTP app, the data channel server, pools, store, environments, backends."""
