"""The master process: supervisor (its verbs), slot table, spawner, process handles (DESIGN.md §2).

Nothing is imported here. A worker never imports this package: what both ends share (the
channel, its messages, the spawn arguments) is in ``asynccluster.contracts``.
"""
