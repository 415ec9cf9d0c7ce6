"""Config: one declaration per setting; CLI > env > file > default; clear errors."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

from asynccluster.cli import build_parser
from asynccluster.cli.parser import config_from_args
from asynccluster.cli.run import format_effective_config
from asynccluster.config import Config, ConfigError, load_config, parse_size, settings, unknown_env_warnings
from asynccluster.docs import settings_markdown

ROOT = Path(__file__).resolve().parent.parent


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_precedence_cli_over_env_over_file_over_default(tmp_path: Path) -> None:
    file = write(tmp_path / "ac.toml", "port = 7000\nworkers = 3\nbacklog = 10\n")
    env = {"ASYNCCLUSTER_PORT": "7100", "ASYNCCLUSTER_WORKERS": "2"}
    config, sources = load_config(cli={"port": "7200"}, env=env, config_file=file)
    assert (config.port, config.workers, config.backlog, config.host) == (7200, 2, 10, "127.0.0.1")
    assert sources["port"] == "cli"
    assert sources["workers"] == "env ASYNCCLUSTER_WORKERS"
    assert sources["backlog"] == f"file {file}"
    assert sources["host"] == "default"


def test_pyproject_table_and_dashed_keys(tmp_path: Path) -> None:
    file = write(tmp_path / "pyproject.toml", '[project]\nname="x"\n[tool.asynccluster]\ngraceful-timeout = 3\n')
    config, _ = load_config(env={}, config_file=file)
    assert config.graceful_timeout == 3.0


def test_unknown_key_is_rejected_with_a_suggestion(tmp_path: Path) -> None:
    file = write(tmp_path / "ac.toml", "graceful_timout = 3\n")
    with pytest.raises(ConfigError, match="did you mean 'graceful_timeout'"):
        load_config(env={}, config_file=file)


def test_bad_value_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="lifespan"):
        load_config(cli={"lifespan": "sometimes"}, env={})
    with pytest.raises(ConfigError, match="workers"):
        load_config(cli={"workers": "0"}, env={})


def test_web_concurrency_is_a_default_below_our_own_env() -> None:
    config, sources = load_config(env={"WEB_CONCURRENCY": "5"})
    assert config.workers == 5 and sources["workers"] == "env WEB_CONCURRENCY"
    config, _ = load_config(env={"WEB_CONCURRENCY": "5", "ASYNCCLUSTER_WORKERS": "auto"})
    assert config.workers == "auto"


def test_cli_flags_are_derived_from_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(["run", "m:a", "--no-access-log", "--workers", "auto", "--max-memory", "512M"])
    config, sources = config_from_args(args)
    assert config.app == "m:a" and config.access_log is False and config.workers == "auto"
    assert config.max_memory == 512 << 20
    assert sources["access_log"] == "cli"
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--help"])
    help_text = capsys.readouterr().out
    for fld in settings():
        if not fld.metadata["positional"]:
            assert "--" + fld.name.replace("_", "-") in help_text


def test_config_is_frozen_and_picklable() -> None:
    config = Config(app="m:a", workers=4, forwarded_allow_ips=("10.0.0.0/8",))
    assert pickle.loads(pickle.dumps(config)) == config
    with pytest.raises(AttributeError):
        config.port = 1  # type: ignore[misc]


def test_sizes() -> None:
    assert parse_size("1K") == 1024 and parse_size("2MiB") == 2 << 20 and parse_size("100") == 100


@pytest.mark.integration  # real processes (tests/conftest.py: the tiers)
def test_print_config_shows_sources(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "[tool.asynccluster]\nport = 7001\n")
    out = subprocess.run(
        [sys.executable, "-m", "asynccluster", "run", "m:a", "--print-config", "--workers", "2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=30,
        env={"PYTHONPATH": str(ROOT), "ASYNCCLUSTER_BACKLOG": "77", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"port                      = 7001  (file {tmp_path / 'pyproject.toml'})" in out.stdout
    assert "workers                   = 2  (cli)" in out.stdout
    assert "backlog                   = 77  (env ASYNCCLUSTER_BACKLOG)" in out.stdout


@pytest.mark.integration  # real processes (tests/conftest.py: the tiers)
def test_bad_setting_exits_with_usage_code() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "asynccluster", "run", "m:a", "--lifespan", "never"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 2
    assert "lifespan" in out.stderr and "Traceback" not in out.stderr


def test_effective_config_lists_every_setting() -> None:
    config, sources = load_config(env={})
    text = format_effective_config(config, sources)
    assert len(text.splitlines()) == len(settings())


def test_settings_doc_is_up_to_date() -> None:
    assert (ROOT / "docs" / "settings.md").read_text() == settings_markdown()


@pytest.mark.integration  # real processes (tests/conftest.py: the tiers)
def test_management_commands_read_settings_from_the_config_file(tmp_path: Path) -> None:
    control = tmp_path / "ctl"
    write(tmp_path / "pyproject.toml", f'[tool.asynccluster]\ncontrol_dir = "{control}"\n')
    out = subprocess.run(
        [sys.executable, "-m", "asynccluster", "ls"],
        cwd=tmp_path, capture_output=True, text=True, timeout=30,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"control directory {control}" in out.stdout


def test_access_log_format_is_checked_when_settings_load() -> None:
    assert load_config(cli={"access_log_format": "%(method)s %(status)d"}, env={})[0].access_log_format
    with pytest.raises(ConfigError, match="unknown field 'user_agent'"):
        load_config(cli={"access_log_format": "%(user_agent)s"}, env={})
    with pytest.raises(ConfigError, match="access_log_format"):
        load_config(cli={"access_log_format": "%(status)d %"}, env={})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("port", "70000", "a port from 0 to 65535"),
        ("port", "-1", ">= 0"),
        ("workers", "abc", "a number of workers >= 1, or 'auto'"),
        ("max_memory", "12X", "K, M or G"),
        ("graceful_timeout", "-1", ">= 0"),
        ("ready_timeout", "0", "> 0"),
        ("backlog", "-5", ">= 1"),
        ("limit_pipeline", "0", ">= 1"),
    ],
)
def test_out_of_range_values_say_what_is_expected(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name}: expected .*{re.escape(message)}"):
        load_config(cli={name: value}, env={})


def test_toml_numbers_and_python_values_are_accepted(tmp_path: Path) -> None:
    file = write(tmp_path / "ac.toml", "graceful_timeout = 2.5\nport = 0\nproxy_headers = false\nmax_memory = 1024\n")
    config, _ = load_config(env={}, config_file=file)
    assert (config.graceful_timeout, config.port, config.proxy_headers, config.max_memory) == (2.5, 0, False, 1024)


def test_defaults_elsewhere_match_config() -> None:
    """Lower layers that cannot take Config (http/ is sans-IO) repeat a default: it must be Config's."""
    import inspect

    from asynccluster.http.limits import Limits
    from asynccluster.http.proxy import TrustedProxies
    from asynccluster.sockets import Listeners
    from asynccluster.worker.lifespan import Lifespan

    config = Config()
    limits = Limits()
    assert (limits.request_line, limits.header_fields, limits.header_size, limits.body) == (
        config.limit_request_line,
        config.limit_request_fields,
        config.limit_request_header_size,
        config.limit_request_body,
    )
    assert inspect.signature(TrustedProxies).parameters["trusted"].default == config.forwarded_allow_ips
    assert inspect.signature(Lifespan).parameters["shutdown_timeout"].default == config.graceful_timeout
    assert Listeners.__dataclass_fields__["backlog"].default == config.backlog


def test_unknown_environment_settings_are_warned_about() -> None:
    warnings = unknown_env_warnings({"ASYNCCLUSTER_WOKRERS": "3", "ASYNCCLUSTER_WORKER_ID": "0", "HOME": "/"})
    assert warnings == [
        "environment variable ASYNCCLUSTER_WOKRERS is ignored: unknown setting 'wokrers'; did you mean 'workers'?"
    ]


def test_embedding_settings_are_checked_and_layered(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from asynccluster.config import config_from_settings

    monkeypatch.chdir(tmp_path)
    write(tmp_path / "pyproject.toml", "[tool.asynccluster]\nbacklog = 64\n")
    config = config_from_settings({"app": "m:a", "workers": 4}, env={"ASYNCCLUSTER_PORT": "0"})
    assert (config.workers, config.port, config.backlog) == (4, 0, 64)
    with pytest.raises(ConfigError, match="did you mean 'workers'"):
        config_from_settings({"app": "m:a", "wokers": 4}, env={})


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("examples/hello.py", "a module, not a file: examples.hello:app"),
        ("examples.hello", "name the attribute: examples.hello:app?"),
        ("examples.hello:", "expected 'module:attribute'"),
        (":app", "expected 'module:attribute'"),
    ],
)
def test_an_app_path_that_is_not_module_colon_attribute_is_a_usage_error(text: str, hint: str) -> None:
    """Checked when settings load (exit 2), before a port is bound or a worker spawned."""
    from asynccluster.settingtypes import parse_app

    with pytest.raises(ValueError, match=re.escape(hint)):
        parse_app(text)
    assert parse_app(" pkg.mod:app.sub ") == "pkg.mod:app.sub"
