"""hostdiag: Linux host diagnostics with a Cython hot path."""

__version__ = "0.1.0"
