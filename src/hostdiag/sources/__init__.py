"""Readers of the host's kernel interfaces. Each returns plain data for one
snapshot section and records what it could not read in a :class:`Problems`."""
