"""Settings: flags > environment > TOML file > defaults, and one clear line for a bad value."""

from __future__ import annotations

import os
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import densityd.cli
import densityd.config
from densityd.config import (
    ConfigError,
    Settings,
    env_name,
    flag_name,
    load_settings,
    resolve_config_file,
    split_listen_address,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No DENSITYD_* variable from the caller's shell, and no /etc/densityd file."""
    for name in list(os.environ):
        if name.startswith("DENSITYD_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(densityd.config, "DEFAULT_CONFIG_FILE", tmp_path / "absent.toml")
    yield


@pytest.fixture
def toml_file(tmp_path: Path) -> Path:
    path = tmp_path / "densityd.toml"
    path.write_text(
        'interval = 30.0\ndisk_interval = 100\nsource_timeout = 5\nlisten_address = "127.0.0.1:1"\n'
        'host_disk_paths = ["/srv/a", "/srv/b"]\ndocker_stats_mode = "api"\n'
    )
    return path


def test_defaults() -> None:
    settings = load_settings({})
    assert settings.interval == 15.0
    assert settings.disk_interval == 300.0
    assert settings.source_timeout == 10.0
    assert settings.listen_address == "0.0.0.0:9847"
    assert settings.listen == ("0.0.0.0", 9847)
    assert settings.docker is True
    assert settings.docker_stats_mode == "auto"
    assert settings.cgroup_root == Path("/sys/fs/cgroup")
    assert settings.proc_root == Path("/proc")
    assert settings.sys_root == Path("/sys")
    assert settings.host_disk_paths == []
    assert settings.log_level == "INFO"


def test_file_overrides_defaults(toml_file: Path) -> None:
    settings = load_settings({}, toml_file)
    assert settings.interval == 30.0
    assert settings.disk_interval == 100.0
    assert settings.source_timeout == 5.0
    assert settings.listen == ("127.0.0.1", 1)
    assert settings.host_disk_paths == ["/srv/a", "/srv/b"]
    assert settings.docker_stats_mode == "api"
    assert settings.docker_timeout == 10.0  # not in the file: the default


def test_precedence_flags_over_env_over_file_over_defaults(
    monkeypatch: pytest.MonkeyPatch, toml_file: Path
) -> None:
    monkeypatch.setenv("DENSITYD_INTERVAL", "20")
    monkeypatch.setenv("DENSITYD_DISK_INTERVAL", "200")
    monkeypatch.setenv("DENSITYD_HOST_DISK_PATHS", '["/env"]')
    settings = load_settings({"interval": "10"}, toml_file)
    assert settings.interval == 10.0  # flag
    assert settings.disk_interval == 200.0  # env over file
    assert settings.host_disk_paths == ["/env"]  # env over file
    assert settings.source_timeout == 5.0  # file over default
    assert settings.docker_timeout == 10.0  # default

    monkeypatch.delenv("DENSITYD_INTERVAL")
    assert load_settings({}, toml_file).interval == 30.0
    assert load_settings({}).interval == 15.0


def test_env_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DENSITYD_DOCKER", "false")
    monkeypatch.setenv("DENSITYD_LOG_LEVEL", "debug")
    monkeypatch.setenv("DENSITYD_LISTEN_ADDRESS", "[::1]:9000")
    settings = load_settings({})
    assert settings.docker is False
    assert settings.log_level == "DEBUG"
    assert settings.listen == ("::1", 9000)


def test_unrelated_densityd_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    # DENSITYD_CONFIG names the file and the test suite uses DENSITYD_REQUIRE_BACKENDS:
    # neither is a setting, and neither may be refused as one.
    monkeypatch.setenv("DENSITYD_REQUIRE_BACKENDS", "1")
    monkeypatch.setenv("DENSITYD_CONFIG", "/nonexistent/densityd.toml")
    assert load_settings({}).interval == 15.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("interval", 0),
        ("interval", -1),
        ("interval", "abc"),
        ("disk_interval", "0"),
        ("source_timeout", -0.5),
        ("listen_address", "nope"),
        ("listen_address", "host:70000"),
        ("docker_stats_mode", "bogus"),
        ("docker_api_workers", 0),
        ("docker_api_workers", 257),
        ("docker", "maybe"),
        ("log_level", "LOUD"),
    ],
)
def test_bad_flag_value_names_the_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({field: value})
    message = str(caught.value)
    assert field in message
    assert flag_name(field) in message
    assert env_name(field) in message
    assert "\n" not in message


def test_bad_env_value_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DENSITYD_SOURCE_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match=r"source_timeout .*--source-timeout.*'soon'"):
        load_settings({})


def test_bad_list_env_value_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DENSITYD_HOST_DISK_PATHS", "/not/json")
    with pytest.raises(ConfigError, match="host_disk_paths"):
        load_settings({})


def test_bad_file_value_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('docker_api_workers = "many"\n')
    with pytest.raises(ConfigError, match="docker_api_workers"):
        load_settings({}, path)


def test_unknown_toml_key(tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text("intervall = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'intervall' in the config file"):
        load_settings({}, path)


def test_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("interval = [\n")
    with pytest.raises(ConfigError, match="not valid TOML") as caught:
        load_settings({}, path)
    assert str(path) in str(caught.value)


def test_config_file_does_not_leak_into_later_loads(toml_file: Path) -> None:
    assert load_settings({}, toml_file).interval == 30.0
    assert load_settings({}).interval == 15.0


def test_resolve_config_file(monkeypatch: pytest.MonkeyPatch, toml_file: Path) -> None:
    assert resolve_config_file(None) is None
    assert resolve_config_file(str(toml_file)) == toml_file
    monkeypatch.setenv("DENSITYD_CONFIG", str(toml_file))
    assert resolve_config_file(None) == toml_file
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_config_file(str(toml_file.parent / "missing.toml"))


def test_resolve_config_file_uses_the_default_when_present(
    monkeypatch: pytest.MonkeyPatch, toml_file: Path
) -> None:
    monkeypatch.setattr(densityd.config, "DEFAULT_CONFIG_FILE", toml_file)
    assert resolve_config_file(None) == toml_file


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0:9847", ("0.0.0.0", 9847)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("localhost:65535", ("localhost", 65535)),
        ("[::1]:9847", ("::1", 9847)),
        ("[::]:80", ("::", 80)),
        (":9847", ("0.0.0.0", 9847)),
    ],
)
def test_split_listen_address(text: str, expected: tuple[str, int]) -> None:
    assert split_listen_address(text) == expected


@pytest.mark.parametrize("text", ["nope", "", "9847", "host:", "host:port", "[::1]", "h:65536"])
def test_split_listen_address_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        split_listen_address(text)


def test_flag_and_env_names() -> None:
    assert flag_name("disk_interval") == "--disk-interval"
    assert env_name("disk_interval") == "DENSITYD_DISK_INTERVAL"
    for name in Settings.model_fields:
        assert env_name(name) == "DENSITYD_" + name.upper()


# -- the CLI ------------------------------------------------------------------------------


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Settings]]:
    """Stand-ins for the daemon and ``sample``: record the settings, touch no backend."""
    calls: list[tuple[str, Settings]] = []

    def fake_run(settings: Settings) -> int:
        calls.append(("run", settings))
        return 0

    def fake_sample(settings: Settings, output: str, cpu_window: float) -> int:
        calls.append(("sample", settings))
        return 0

    # The CLI imports each command when it runs it: patch where it imports from.
    monkeypatch.setattr("densityd.daemon.run_daemon", fake_run)
    monkeypatch.setattr("densityd.collect.once.sample_command", fake_sample)
    monkeypatch.setattr(densityd.cli, "_setup_logging", lambda level: None)
    return calls


def run_main(argv: list[str]) -> int:
    """``main`` returns 2 for a bad value; argparse exits 2 for a bad flag."""
    try:
        return densityd.cli.main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["run", "--interval", "-1"], "interval"),
        (["run", "--listen-address", "nope"], "listen_address"),
        (["sample", "--docker-stats-mode", "bogus"], "docker_stats_mode"),
        (["run", "--docker-api-workers", "0"], "docker_api_workers"),
        (["plan", "--capacity", "memory=12Qi"], "capacity"),
        (["run", "--capacity", "cpu=-1"], "capacity"),
        (["plan", "--reserved", "gpu=1"], "reserved"),
        (["plan", "--ratio", "cpu=0"], "ratio"),
        (["plan", "--target-fill", "1.5"], "target_fill"),
        (["plan", "--window", "forever"], "window"),
        (["run", "--retention", "0d"], "retention"),
        (["plan", "--percentile", "0"], "percentile"),
        (["run", "--guest-os", "beos"], "guest_os"),
        (["run", "--plan-profile", "web=cpu=lots"], "plan_profiles"),
    ],
)
def test_cli_bad_value_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str],
    captured: list[tuple[str, Settings]],
    argv: list[str],
    field: str,
) -> None:
    assert run_main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("densityd: ")
    assert field in lines[0]
    assert flag_name(field) in lines[0]
    assert captured == []


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("DENSITYD_INTERVAL", "abc", "interval"),
        ("DENSITYD_HOST_DISK_PATHS", "/not/json", "host_disk_paths"),
    ],
)
def test_cli_bad_env_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    captured: list[tuple[str, Settings]],
    variable: str,
    value: str,
    field: str,
) -> None:
    monkeypatch.setenv(variable, value)
    assert run_main(["run"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert field in lines[0]
    assert captured == []


def test_cli_bad_config_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], captured: list[tuple[str, Settings]]
) -> None:
    path = tmp_path / "typo.toml"
    path.write_text("intervall = 3\n")
    assert run_main(["run", "--config", str(path)]) == 2
    assert run_main(["run", "--config", str(tmp_path / "missing.toml")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    assert "intervall" in lines[0]
    assert "does not exist" in lines[1]
    assert captured == []


def test_cli_unknown_flag_exits_2(
    capsys: pytest.CaptureFixture[str], captured: list[tuple[str, Settings]]
) -> None:
    with pytest.raises(SystemExit) as caught:
        densityd.cli.main(["run", "--intervall", "3"])
    assert caught.value.code == 2
    assert "--intervall" in capsys.readouterr().err
    assert captured == []


def test_cli_negative_cpu_window_exits_2(
    capsys: pytest.CaptureFixture[str], captured: list[tuple[str, Settings]]
) -> None:
    with pytest.raises(SystemExit) as caught:
        densityd.cli.main(["sample", "--cpu-window", "-1"])
    assert caught.value.code == 2
    assert "--cpu-window" in capsys.readouterr().err
    assert captured == []


def test_cli_flags_reach_the_settings(
    monkeypatch: pytest.MonkeyPatch, toml_file: Path, captured: list[tuple[str, Settings]]
) -> None:
    monkeypatch.setenv("DENSITYD_DISK_INTERVAL", "200")
    argv = [
        "run",
        "--config",
        str(toml_file),
        "--interval",
        "10",
        "--listen-address",
        "[::1]:9847",
        "--no-docker",
        "--host-disk-path",
        "/x",
        "--host-disk-path",
        "/y",
    ]
    assert densityd.cli.main(argv) == 0
    [(command, settings)] = captured
    assert command == "run"
    assert settings.interval == 10.0
    assert settings.listen == ("::1", 9847)
    assert settings.docker is False
    assert settings.host_disk_paths == ["/x", "/y"]
    assert settings.disk_interval == 200.0  # env
    assert settings.source_timeout == 5.0  # file
    assert settings.docker_stats_mode == "api"  # file


def test_cli_config_from_env(
    monkeypatch: pytest.MonkeyPatch, toml_file: Path, captured: list[tuple[str, Settings]]
) -> None:
    monkeypatch.setenv("DENSITYD_CONFIG", str(toml_file))
    assert densityd.cli.main(["sample", "--docker-stats-mode", "cgroup"]) == 0
    [(command, settings)] = captured
    assert command == "sample"
    assert settings.interval == 30.0
    assert settings.docker_stats_mode == "cgroup"


@pytest.mark.parametrize("command", ["run", "sample", "plan"])
def test_every_setting_has_a_flag(capsys: pytest.CaptureFixture[str], command: str) -> None:
    with pytest.raises(SystemExit) as caught:
        densityd.cli.main([command, "--help"])
    assert caught.value.code == 0
    help_text = capsys.readouterr().out
    for name, field in Settings.model_fields.items():
        flag = flag_name(name)
        if field.annotation is bool:
            assert f"--no-{name.replace('_', '-')}" in help_text
        if typing.get_origin(field.annotation) is list:
            flag = flag.removesuffix("s")  # repeatable and singular: --host-disk-path
        assert flag + " " in help_text


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["plan", "--profile", "cpu=lots,memory=1Gi"], ["--profile", "cpu", "lots"]),
        (["plan", "--profile", "memory=512Mx"], ["--profile", "memory", "512Mx"]),
        (["plan", "--profile", "gpu=1"], ["--profile", "gpu"]),
        (
            ["plan", "--no-docker", "--no-libvirt", "--no-history", "--like", "ghost"],
            ["--like", "ghost"],
        ),
    ],
)
def test_cli_plan_bad_request_exits_2_naming_the_part(
    capsys: pytest.CaptureFixture[str], argv: list[str], named: list[str]
) -> None:
    assert run_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("densityd plan: "), err
    for part in named:
        assert part in err, err


def test_cli_plan_flags_that_exclude_each_other_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["plan", "--profile", "cpu=1", "--like", "web"]) == 2
    assert run_main(["plan", "--kind", "vm", "--compare"]) == 2
    assert "not allowed with" in capsys.readouterr().err
