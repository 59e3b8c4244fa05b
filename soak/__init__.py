"""The soak suite: a simulated week of a long-lived crawler against a misbehaving server."""
