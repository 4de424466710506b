"""What runs in the user's process: the client, the session, sync, call forms, the dev loop."""
