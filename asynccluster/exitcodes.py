"""Exit codes of the master (and of a worker that fails before it is ready).

Documented in README.md ("Exit status"). A worker that cannot become ready exits with the
code of its reason, and the master, when no worker ever became ready, exits with that same
code, so an orchestrator sees *why* (issue 3).
"""

from __future__ import annotations

OK = 0
ERROR = 1  # unexpected internal error
USAGE = 2  # bad command line or configuration (argparse also uses 2)
APP_IMPORT = 3  # the app could not be imported (module, attribute or factory)
LIFESPAN = 4  # lifespan startup failed
BIND = 5  # address in use, permission denied, bad fd/uds
NEVER_READY = 6  # workers kept failing before ready for another reason (e.g. crashed, timed out)
FORCED = 7  # stop was forced (second Ctrl-C, or workers killed after the graceful timeout)
TLS = 8  # the TLS certificate, key or CA file could not be used (issue 13)

DESCRIPTIONS: dict[int, str] = {
    OK: "clean stop",
    ERROR: "internal error",
    USAGE: "bad command line or configuration",
    APP_IMPORT: "the app could not be imported",
    LIFESPAN: "lifespan startup failed",
    BIND: "could not bind the listening socket",
    NEVER_READY: "no worker became ready",
    FORCED: "forced stop (workers killed)",
    TLS: "the TLS certificate or key could not be used",
}
