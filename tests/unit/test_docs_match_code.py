"""The README's tables and config/densityd.toml stay true to the code."""

from __future__ import annotations

import re
import tomllib

from densityd.collect.sampler import SnapshotHolder
from densityd.config import Settings, env_name, flag_name, load_settings
from densityd.history.recorder import HistoryRecorder
from densityd.history.store import HistoryStore
from densityd.plan.live import LivePlan
from densityd.serve.exporter import SnapshotCollector
from tests import paths

ROOT = paths.ROOT
README = (ROOT / "README.md").read_text()
EXAMPLE_CONFIG = (ROOT / "config" / "densityd.toml").read_text()


def test_every_setting_is_in_the_readme_reference() -> None:
    rows = {
        match.group(1): match.group(0)
        for match in re.finditer(r"^\| `(\w+)` \|.*$", README, re.MULTILINE)
    }
    for name in Settings.model_fields:
        assert name in rows, f"{name} missing from the README's configuration reference"
        assert f"`{flag_name(name)}`" in rows[name]
        assert f"`{env_name(name)}" in rows[name]


def test_every_setting_is_in_the_example_config_and_its_values_load() -> None:
    commented = re.findall(r"^# (\w+) = (.+)$", EXAMPLE_CONFIG, re.MULTILINE)
    keys = [key for key, _ in commented]
    assert sorted(keys) == sorted(Settings.model_fields)
    uncommented = "\n".join(f"{key} = {value}" for key, value in commented)
    values = tomllib.loads(uncommented)
    settings = load_settings(values)
    defaults = Settings()
    for key in (
        "listen_address",
        "interval",
        "disk_interval",
        "source_timeout",
        "docker_stats_mode",
        "docker_api_workers",
        "cgroup_root",
        "log_level",
    ):
        assert getattr(settings, key) == getattr(defaults, key), key


def test_every_metric_family_is_in_the_readme_table() -> None:
    documented = set(re.findall(r"^\| `(densityd_\w+)", README, re.MULTILINE))
    settings = load_settings({})
    collectors = (
        SnapshotCollector(SnapshotHolder()),
        HistoryRecorder(lambda: HistoryStore(ROOT / "unused"), ROOT / "unused"),
        LivePlan(settings, data_dirs=dict, store=lambda: None),
    )
    families = [family for collector in collectors for family in collector.describe()]
    assert len(families) > 40
    for family in families:
        name = family.name + ("_total" if family.type == "counter" else "")
        assert name in documented, f"{name} missing from the README's metric table"
