"""The contracts between asynccluster's processes and layers (issue 10): a leaf package.

It imports only the standard library and is imported by everyone (master, worker, CLI), so
the seams have one definition each and no import cycle can run through them
(tests/test_architecture.py checks both). Nothing is imported here: importing one contract
loads only that module.

- ``channel``: the master<->worker channel's framing and the :class:`Channel` on a loop;
- ``messages``: every message that crosses that channel, one frozen dataclass per kind,
  with one ``encode``/``decode`` pair;
- ``spawn``: the worker's spawn arguments and the environment names the master sets for it;
- ``version``: ``__version__``;
- ``states``, ``results``, ``status``: cluster/slot/worker states, operation results, status views;
- ``control``: the control socket's client half (paths, names, requests and responses).
"""
