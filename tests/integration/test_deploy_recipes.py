"""The shipped deployment recipes against the code they deploy (issue 14).

There is no container engine, Kubernetes or systemd-as-PID-1 here, so the recipes are
linted in CI (.ci/lint-recipes: hadolint, kubernetes-validate, systemd-analyze verify) and
their asynccluster parts are checked here for real: the Dockerfile's ENV + CMD run as PID 1
of a fresh PID namespace (what ``docker run`` does) and its HEALTHCHECK command passes; every
setting the Kubernetes and systemd recipes pass is accepted by ``--print-config``; the
Deployment's terminationGracePeriodSeconds covers the stop those settings ask for.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from asynccluster.config import Config
from tests.integration.conftest import REPO
from tests.integration.test_deploy_pid1 import SKIP_REASON, UNSHARE, namespace_init

pytestmark = pytest.mark.deploy
DOCKERFILE = REPO / "examples" / "docker" / "Dockerfile"
KUBERNETES = REPO / "examples" / "kubernetes"
SYSTEMD = REPO / "examples" / "systemd"
ASYNCCLUSTER = [sys.executable, "-m", "asynccluster"]
LIFESPAN_CAP = 10.0  # policy.Timing.shutdown_cap
EXIT_GRACE = 1.0  # policy.Timing.kill_grace


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    joined = re.sub(
        r"\\\n\s*", " ", "\n".join(line for line in path.read_text().splitlines() if not line.startswith("#"))
    )
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in instructions(DOCKERFILE):
        if instruction == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(args))
    return env


def dockerfile_exec(name: str) -> list[str]:
    """The exec-form (JSON) command of CMD or HEALTHCHECK."""
    for instruction, args in instructions(DOCKERFILE):
        if instruction == name:
            command: list[str] = json.loads(args[args.index("[") :])
            return command
    raise AssertionError(f"no {name} in {DOCKERFILE}")


def print_config(args: list[str], env: dict[str, str]) -> str:
    """``asynccluster run ARGS --print-config`` with ``env``; fails on a rejected setting."""
    done = subprocess.run([*ASYNCCLUSTER, *args, "--print-config"], env={**os.environ, **env}, cwd=REPO,
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "ignored" not in done.stderr, done.stderr  # an ASYNCCLUSTER_* variable with a typo
    return done.stdout


@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
def test_the_docker_cmd_runs_as_pid1_and_its_healthcheck_passes(cluster_factory: Any) -> None:
    env = dockerfile_env()
    command = dockerfile_exec("CMD")
    assert command[:2] == ["asynccluster", "run"]
    # The image's settings, on ports of our own (tests run side by side).
    env.update(ASYNCCLUSTER_HOST="127.0.0.1", ASYNCCLUSTER_ADMIN="127.0.0.1:0", WEB_CONCURRENCY="2")
    env.pop("PATH")
    cluster = cluster_factory(*command[2:], env=env, prefix=UNSHARE)
    cluster.wait_ready()
    master = namespace_init(cluster)
    admin = cluster.wait_for(r"admin endpoint on http://127\.0\.0\.1:(\d+)/").group(1)
    healthcheck = [sys.executable if part == "python" else part.replace(":9100", f":{admin}")
                   for part in dockerfile_exec("HEALTHCHECK")]  # fmt: skip
    assert subprocess.run(healthcheck, timeout=30).returncode == 0
    os.kill(master, signal.SIGTERM)  # docker stop: STOPSIGNAL to PID 1
    assert cluster.wait_exit(60) == 0, cluster.output_tail()
    assert "STOPSIGNAL SIGTERM" in DOCKERFILE.read_text()


def deployment_container() -> dict[str, Any]:
    deployment = yaml.safe_load((KUBERNETES / "deployment.yaml").read_text())
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    container["terminationGracePeriodSeconds"] = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    return container


def test_the_deployment_settings_are_accepted_and_its_grace_period_covers_the_stop() -> None:
    container = deployment_container()
    env = {**dockerfile_env(), **{item["name"]: item["value"] for item in container["env"]}}
    env.pop("PATH")
    print_config(dockerfile_exec("CMD")[1:], env)
    config = Config(graceful_timeout=float(env["ASYNCCLUSTER_GRACEFUL_TIMEOUT"]))
    needed = float(env["ASYNCCLUSTER_SHUTDOWN_DELAY"]) + config.graceful_timeout
    needed += min(config.graceful_timeout, LIFESPAN_CAP) + EXIT_GRACE
    assert container["terminationGracePeriodSeconds"] > needed
    assert "lifecycle" not in container, "no preStop hook: --shutdown-delay does its job"
    probes = {name: container[name]["httpGet"]["path"] for name in ("livenessProbe", "readinessProbe", "startupProbe")}
    assert probes == {"livenessProbe": "/livez", "readinessProbe": "/readyz", "startupProbe": "/readyz"}


@pytest.mark.parametrize("unit", ["hello.service", "hello-activated.service"])
def test_the_systemd_units_settings_are_accepted(unit: str) -> None:
    lines = (SYSTEMD / unit).read_text().splitlines()
    exec_start = shlex.split(next(line for line in lines if line.startswith("ExecStart="))[len("ExecStart=") :])
    assert exec_start[0].endswith("/asynccluster") and exec_start[1] == "run"
    env = dict(line[len("Environment=") :].split("=", 1) for line in lines if line.startswith("Environment="))
    print_config(exec_start[1:], env)
