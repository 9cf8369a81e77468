"""Builds the Cython hot path from csrc/ into hostdiag._hotparsers.

HOSTDIAG_PURE=1 at build time skips the extension; the package then runs on its
pure-Python twins and `diag version` says so. Without it, a failed compile
fails the install: a broken build never hides behind the fallback.
"""

import os

from setuptools import Extension, setup

ext_modules = []
if os.environ.get("HOSTDIAG_PURE", "") in ("", "0"):
    from Cython.Build import cythonize

    ext_modules = cythonize(
        [Extension("hostdiag._hotparsers", ["csrc/_hotparsers.pyx"])],
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
        },
    )

setup(ext_modules=ext_modules)
