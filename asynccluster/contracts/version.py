"""The package's version: one source, read by ``asynccluster.__version__``, ``describe``, the
CLI's ``--version`` and the build (pyproject's ``[tool.setuptools.dynamic]`` reads this file
without importing it)."""

from __future__ import annotations

__version__ = "0.1.0"
