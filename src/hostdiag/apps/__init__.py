"""The composition roots: the commands `diag`, `diag agent`, `diag collector` and the history commands.

Only these modules wire the layers together; they share :mod:`hostdiag.apps.common`.
"""
