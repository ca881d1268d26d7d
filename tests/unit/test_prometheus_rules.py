"""The Prometheus example, rules and systemd unit in config/ are valid, tested and hardened.

``promtool`` (Debian's prometheus package) checks the rule files and the scrape example and
runs the rule unit tests in config/tests/. Without promtool those tests skip, unless
``DENSITYD_REQUIRE_BACKENDS=1`` turns that into a failure, as in tests/integration/backends.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import paths

ROOT = paths.ROOT
CONFIG = ROOT / "config"
ALERTS = CONFIG / "densityd-alerts.yml"
RECORDING = CONFIG / "densityd-rules.yml"
SCRAPE_EXAMPLE = CONFIG / "prometheus.yml"
RULE_TESTS = sorted((CONFIG / "tests").glob("*.yml"))
UNIT = CONFIG / "densityd.service"
README = ROOT / "README.md"
REQUIRE_BACKENDS = os.environ.get("DENSITYD_REQUIRE_BACKENDS") == "1"


def missing_backend(reason: str) -> None:
    """Skip, or fail when CI demands every backend."""
    if REQUIRE_BACKENDS:
        pytest.fail(f"backend required but missing: {reason}")
    pytest.skip(reason)


def promtool(*args: str) -> str:
    """Run promtool in config/ and return its output; fail the test if it fails."""
    path = shutil.which("promtool")
    if path is None:
        missing_backend("promtool is not installed (Debian package prometheus)")
    assert path is not None
    result = subprocess.run([path, *args], cwd=CONFIG, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def load_yaml(path: Path) -> Any:
    """One YAML document."""
    return yaml.safe_load(path.read_text())


def rules(path: Path, key: str) -> list[dict[str, Any]]:
    """The rules of every group in a rule file that have ``key`` (``alert`` or ``record``)."""
    return [rule for group in load_yaml(path)["groups"] for rule in group["rules"] if key in rule]


def test_rule_files_pass_promtool_check_rules() -> None:
    output = promtool("check", "rules", RECORDING.name, ALERTS.name)
    assert output.count("SUCCESS") == 2
    assert f"{len(rules(RECORDING, 'record'))} rules found" in output
    assert f"{len(rules(ALERTS, 'alert'))} rules found" in output


def test_scrape_example_passes_promtool_check_config_and_loads_both_rule_files() -> None:
    output = promtool("check", "config", SCRAPE_EXAMPLE.name)
    assert "SUCCESS: 2 rule files found" in output
    config = load_yaml(SCRAPE_EXAMPLE)
    # Relative rule_files paths resolve against the directory of prometheus.yml.
    assert sorted(config["rule_files"]) == sorted([RECORDING.name, ALERTS.name])
    # DensitydDown selects this job name.
    assert [job["job_name"] for job in config["scrape_configs"]] == ["densityd"]


def test_rule_unit_tests_pass() -> None:
    assert len(RULE_TESTS) >= 2
    output = promtool("test", "rules", *(str(path) for path in RULE_TESTS))
    assert output.count("SUCCESS") == len(RULE_TESTS)
    assert "FAILED" not in output


def alert_tests() -> list[dict[str, Any]]:
    """Every ``alert_rule_test`` entry of every rule test file."""
    return [
        case
        for path in RULE_TESTS
        for test in load_yaml(path)["tests"]
        for case in test.get("alert_rule_test", [])
    ]


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    cases = alert_tests()
    alerts = [rule["alert"] for rule in rules(ALERTS, "alert")]
    assert len(alerts) >= 6
    for alert in alerts:
        mine = [case for case in cases if case["alertname"] == alert]
        assert any(case.get("exp_alerts") for case in mine), f"{alert} never tested firing"
        assert any(not case.get("exp_alerts") for case in mine), f"{alert} never tested quiet"
        for case in mine:
            for expected in case.get("exp_alerts") or []:
                assert set(expected.get("exp_annotations", {})) == {"summary", "description"}
    tested = {case["alertname"] for case in cases}
    assert tested <= set(alerts), f"tests for alerts that do not exist: {tested - set(alerts)}"


def test_every_recording_rule_is_tested() -> None:
    exprs = {
        case["expr"]
        for path in RULE_TESTS
        for test in load_yaml(path)["tests"]
        for case in test.get("promql_expr_test", [])
    }
    for rule in rules(RECORDING, "record"):
        assert rule["record"] in exprs, f"recording rule {rule['record']} has no test"


def test_alerts_have_for_severity_and_annotations() -> None:
    for rule in rules(ALERTS, "alert"):
        name = rule["alert"]
        assert re.fullmatch(r"Densityd[A-Z]\w+", name), name
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{name} has no for:"
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description"}, name
        assert "{{ $labels.instance }}" in annotations["summary"], name


def test_recording_rules_are_named_level_metric_operations() -> None:
    for rule in rules(RECORDING, "record"):
        level, metric, operations = rule["record"].split(":")
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", level), rule["record"]
        assert metric.startswith("densityd_") and not metric.endswith("_total"), rule["record"]
        assert re.fullmatch(r"[a-z0-9_]+", operations), rule["record"]
        # The level names the labels the result keeps (besides job).
        kept = set(re.findall(r"by \(([^)]*)\)", rule["expr"]))
        for group in kept:
            labels = {label.strip() for label in group.split(",")} - {"job"}
            assert labels == set(level.split("_")), rule["record"]


def test_readme_documents_every_alert_and_its_threshold() -> None:
    readme = README.read_text()
    section = readme.split("### Alerting and recording rules", 1)[1]
    section = re.split(r"\n##+ ", section, maxsplit=1)[0]
    for rule in rules(ALERTS, "alert"):
        assert f"`{rule['alert']}`" in section, f"{rule['alert']} missing from the README"
    for threshold in ("< 3", "7 * 86400", "> 0.9"):
        assert threshold in ALERTS.read_text()
        assert threshold in section, f"threshold {threshold} missing from the README"


def unit_entries(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file as {section: {key: [values in order]}} (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"not a unit file line: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_systemd_unit_is_hardened() -> None:
    unit = unit_entries(UNIT.read_text())
    service = {key: values[-1] for key, values in unit["Service"].items()}
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert service["ExecStart"] == "/usr/local/bin/densityd run --state-dir /var/lib/densityd"
    assert service["User"] == service["Group"] == "densityd"
    assert "SupplementaryGroups" not in service  # see the next test
    assert service["StateDirectory"] == "densityd"
    assert service["ReadWritePaths"] == "/var/lib/densityd"
    assert service["Restart"] == "on-failure"
    assert "Environment" not in service and "EnvironmentFile" not in service
    for key in (
        "NoNewPrivileges",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectControlGroups",
        "RestrictNamespaces",
        "LockPersonality",
        "MemoryDenyWriteExecute",
    ):
        assert service.get(key) == "yes", key
    assert service["ProtectSystem"] == "strict"
    assert service["CapabilityBoundingSet"] == ""
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert unit["Service"]["SystemCallFilter"][0] == "@system-service"
    # densityd reads other users' /proc/PID files and /proc/meminfo: these would hide them.
    assert "ProtectProc" not in service and "ProcSubset" not in service


def test_systemd_unit_names_no_group_a_host_may_lack() -> None:
    """A group the unit names and the host lacks fails the start with 216/GROUP (``docker`` on
    a libvirt-only host, ``libvirt`` on a Docker-only one): the unit names only densityd's own
    group, and the install joins ``docker`` only where the group exists (``libvirt``, which
    densityd does not need by default, only when an admin opts in)."""
    unit = unit_entries(UNIT.read_text())
    for section in unit.values():
        assert "SupplementaryGroups" not in section
    assert [key for key in unit["Service"] if key.endswith("Group")] == ["Group"]
    assert unit["Service"]["Group"] == ["densityd"]  # useradd made it, with the user
    # The README's install commands and the unit's header comment (the same steps, on lines).
    readme = README.read_text().split("### Running under systemd", 1)[1].split("\n## ", 1)[0]
    header = " ".join(
        line.lstrip("#").strip() for line in UNIT.read_text().splitlines() if line.startswith("#")
    )
    guarded = "if getent group docker >/dev/null; then usermod -aG docker densityd; fi"
    for where, text in (("README", readme), ("unit header", header)):
        assert guarded in text, where
        # docker only behind getent; libvirt (root-equivalent through polkit) only as opt-in.
        unguarded = text.replace(guarded, "").replace("`usermod -aG libvirt densityd`", "")
        assert not re.search(r"usermod(\s+-\w+)*\s+(docker|libvirt)\b", unguarded), where
    for group in ("docker", "libvirt"):
        assert f"**`{group}`**" in readme, f"the README does not say why {group}"


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify insists that ExecStart exists; densityd need not be installed here.
    text = UNIT.read_text().replace("/usr/local/bin/densityd", "/bin/true")
    (tmp_path / "densityd.service").write_text(text)
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / "densityd.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
