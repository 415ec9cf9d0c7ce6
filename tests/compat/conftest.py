"""The framework matrix needs Python 3.11+ for most pinned framework versions (pyproject.toml, test extra).

On 3.10 those modules are not collected (their frameworks are not installed there); the plain
ASGI module (anyio, uvicorn) still runs.
"""

from __future__ import annotations

import sys

collect_ignore_glob = [] if sys.version_info >= (3, 11) else ["test_compat_[!p]*.py"]
