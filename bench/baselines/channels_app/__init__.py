"""Django Channels baseline: the seed's stack (Channels consumer, in-memory channel layer)."""
