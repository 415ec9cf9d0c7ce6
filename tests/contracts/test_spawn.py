"""The worker's spawn contract and the version: one definition each (contracts/spawn.py,
contracts/version.py), read alike by the master, the worker, the config and the build."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import pickle
import socket

import pytest

import asynccluster
from asynccluster.config import NON_SETTING_ENV
from asynccluster.contracts import spawn, version


def test_the_env_names_the_worker_sets_are_not_taken_for_misspelt_settings() -> None:
    # config.py lists them by value (it is left alone by issue 10): this keeps the two in step.
    assert set(spawn.WORKER_ENV) <= NON_SETTING_ENV
    assert asynccluster.WORKER_ID_ENV == spawn.WORKER_ID_ENV  # still importable from the root


def test_worker_id_reads_the_slot_the_worker_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(spawn.WORKER_ID_ENV, "3")
    assert asynccluster.worker_id() == 3
    monkeypatch.delenv(spawn.WORKER_ID_ENV)
    assert asynccluster.worker_id() is None


def test_worker_args_are_frozen_and_pickle_with_their_config() -> None:
    left, right = socket.socketpair()
    try:
        args = spawn.WorkerArgs(
            config=asynccluster.Config(app="m:a", workers=2),
            slot=1,
            incarnation=4,
            listen_sock=left,
            channel_sock=left,
            stacks_sock=right,
            master_pid=1,
            heartbeat_interval=1.0,
            shutdown_budget=30.0,
        )
        with pytest.raises(dataclasses.FrozenInstanceError):
            args.slot = 2  # type: ignore[misc]
        # Plain pickle cannot carry sockets (multiprocessing's reducer does, in the spawn):
        # everything else must survive the trip.
        plain = dataclasses.replace(args, listen_sock=None, channel_sock=None, stacks_sock=None)  # type: ignore[arg-type]
        again = pickle.loads(pickle.dumps(plain))
        assert again == plain and again.config.workers == 2 and again.output_socks is None
    finally:
        left.close()
        right.close()


def test_one_version_everywhere() -> None:
    assert asynccluster.__version__ == version.__version__
    assert importlib.metadata.version("asynccluster") == version.__version__  # pyproject reads the file
