"""State: the Storage protocol and its backends."""
