"""Builds the Cython hot path: every csrc/NAME.pyx becomes hostdiag.NAME.

HOSTDIAG_PURE=1 at build time skips the extensions; the package then runs on its
pure-Python twins and `diag version` says so. Without it, a failed compile
fails the install: a broken build never hides behind the fallback.
"""

import glob
import os

from setuptools import Extension, setup

ext_modules = []
if os.environ.get("HOSTDIAG_PURE", "") in ("", "0"):
    from Cython.Build import cythonize

    sources = sorted(glob.glob(os.path.join("csrc", "*.pyx")))
    if not sources:
        raise SystemExit("setup.py: no csrc/*.pyx to compile (set HOSTDIAG_PURE=1 for a pure build)")
    ext_modules = cythonize(
        [
            Extension("hostdiag." + os.path.splitext(os.path.basename(path))[0], [path])
            for path in sources
        ],
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
        },
    )

setup(ext_modules=ext_modules)
