"""The master process: supervisor, spawner, channel, operations (DESIGN.md §2).

Nothing is imported here: a worker imports ``asynccluster.master.channel`` alone.
"""
