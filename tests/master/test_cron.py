"""--restart-cron (issue 11 item 6): the expression is checked at load with a clear message, the
next time is computed by cronsim, and at that time the master does a rolling reload of a real
cluster (in-process Cluster, real worker processes; the schedule's clock is shifted so the next
minute is a moment away instead of up to 60 s)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from asynccluster import exitcodes
from asynccluster.cli import main
from asynccluster.config import ConfigError, load_config
from asynccluster.contracts.results import ReloadResult
from asynccluster.master import cron
from asynccluster.master.cluster import Cluster

BASIC = "tests.apps.basic:app"


def test_the_expression_is_checked_with_a_clear_message() -> None:
    config, sources = load_config(cli={"restart_cron": " 0  3 * * * "}, env={}, config_file=None)
    assert config.restart_cron == "0 3 * * *" and sources["restart_cron"] == "cli"
    with pytest.raises(ConfigError, match="expected a 5-field cron expression like '0 3 \\* \\* \\*'"):
        load_config(cli={"restart_cron": "61 * * * *"}, env={}, config_file=None)


def test_a_bad_expression_on_the_command_line_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", BASIC, "--restart-cron", "every night"]) == exitcodes.USAGE
    assert "expected a 5-field cron expression" in capsys.readouterr().err


def test_next_fire() -> None:
    after = datetime(2026, 11, 30, 10, 15, 30, tzinfo=timezone.utc)
    assert cron.next_fire("0 3 * * *", after) == datetime(2026, 12, 1, 3, 0, tzinfo=timezone.utc)
    assert cron.next_fire("*/15 * * * *", after) == datetime(2026, 11, 30, 10, 30, tzinfo=timezone.utc)


async def test_start_cron_is_off_without_an_expression() -> None:
    class NoConfig:
        restart_cron = ""

    assert await cron.start_cron(object(), NoConfig()) is None


@pytest.mark.integration  # real processes (tests/conftest.py: the tiers)
async def test_a_scheduled_restart_reloads_every_worker() -> None:
    cluster = Cluster(app=BASIC, workers=2, port=0, handle_signals=False, access_log=False)
    ready: asyncio.Queue[int] = asyncio.Queue()
    cluster.on("listening", lambda worker: ready.put_nowait(worker.pid))
    serving = asyncio.create_task(cluster.serve())
    try:
        first = {await asyncio.wait_for(ready.get(), 30) for _ in range(2)}
        # Shift the schedule's clock to 0.3 s before the next minute.
        real = datetime.now().astimezone()
        shift = (real.replace(second=0, microsecond=0) + timedelta(minutes=1) - timedelta(seconds=0.3)) - real

        def shifted() -> datetime:
            return datetime.now().astimezone() + shift

        reloads: asyncio.Queue[ReloadResult] = asyncio.Queue()

        async def restart() -> ReloadResult:
            result = await cluster.reload()
            reloads.put_nowait(result)
            return result

        schedule = asyncio.create_task(cron.run_schedule("* * * * *", restart, now=shifted))
        result = await asyncio.wait_for(reloads.get(), 30)
        schedule.cancel()
        assert result.ok and result.replaced == 2, result
        second = {pid for _ in range(2) if (pid := ready.get_nowait())}
        workers = [w for w in cluster.status()["workers"] if w["state"] == "ready"]
        assert {w["pid"] for w in workers} == second and not first & second
        await cluster.stop()
        assert await asyncio.wait_for(serving, 30) == exitcodes.OK
    finally:
        if not serving.done():
            await cluster.stop(force=True)
            await asyncio.wait_for(serving, 30)
