"""Builds samples: the system counters plus, when due, the process and socket tables."""
