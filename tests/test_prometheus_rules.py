"""The shipped Prometheus rules are valid, unit-tested with promtool, and each alert is tested.

promtool comes with Debian's ``prometheus`` package, which ``make test``
installs (APT_PACKAGES in the Makefile).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "etc" / "prometheus"
ALERTS = RULES_DIR / "kwapi-rules.yml"
RECORDING = RULES_DIR / "kwapi-recording-rules.yml"
BUDGETS = RULES_DIR / "kwapi-power-budgets.example.yml"
UNIT_TESTS = RULES_DIR / "tests" / "kwapi-rules-test.yml"
RULE_FILES = [ALERTS, RECORDING, BUDGETS]

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not found: install Debian's prometheus package (make test does)",
)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def rules(path: Path) -> list[dict]:
    return [rule for group in load(path)["groups"] for rule in group["rules"]]


def alerts() -> list[dict]:
    return [rule for rule in rules(ALERTS) if "alert" in rule]


def alert_tests() -> list[dict]:
    return [case for test in load(UNIT_TESTS)["tests"] for case in test.get("alert_rule_test", [])]


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@needs_promtool
@pytest.mark.parametrize("path", RULE_FILES, ids=lambda path: path.name)
def test_promtool_check_rules_passes(path):
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests_pass():
    result = promtool("test", "rules", str(UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_unit_tests_load_every_rules_file():
    loaded = {(UNIT_TESTS.parent / name).resolve() for name in load(UNIT_TESTS)["rule_files"]}
    assert loaded == {path.resolve() for path in RULE_FILES}


def test_every_alert_is_shown_firing_and_silent():
    """A new alert without a unit test of each kind fails here."""
    firing = {case["alertname"] for case in alert_tests() if case.get("exp_alerts")}
    silent = {case["alertname"] for case in alert_tests() if not case.get("exp_alerts")}
    names = {rule["alert"] for rule in alerts()}
    assert names - firing == set(), "alerts never shown firing"
    assert names - silent == set(), "alerts never shown silent"
    assert (firing | silent) - names == set(), "unit tests of alerts that do not exist"


def test_every_firing_case_checks_labels_and_annotations():
    for case in alert_tests():
        for expected in case.get("exp_alerts") or []:
            assert "severity" in expected.get("exp_labels", {}), case
            assert set(expected.get("exp_annotations", {})) >= {"summary", "description"}, case


def test_every_recording_rule_is_unit_tested():
    exprs = " ".join(
        check["expr"]
        for test in load(UNIT_TESTS)["tests"]
        for check in test.get("promql_expr_test", [])
    )
    for rule in rules(RECORDING):
        assert rule["record"] in exprs, f"{rule['record']} has no promql_expr_test"


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: rule["alert"])
def test_alert_is_labelled_and_names_what_it_is_about(rule):
    assert re.fullmatch(r"Kwapi[A-Z][A-Za-z]+", rule["alert"])
    assert rule["labels"]["severity"] in {"warning", "critical"}
    annotations = rule["annotations"]
    assert set(annotations) >= {"summary", "description"}
    for text in (annotations["summary"], annotations["description"]):
        assert "$labels." in text, f"{rule['alert']}: {text!r} names no probe, section or daemon"


def test_only_the_forgery_alert_is_a_security_one():
    security = [rule["alert"] for rule in alerts() if rule["labels"].get("category") == "security"]
    assert security == ["KwapiBusForgeryOrReplay"]


def test_bus_alerts_cover_every_reject_reason():
    """Each reason the receiver counts falls under exactly one of the two bus alerts."""
    from kwapi.bus.receiver import REJECT_REASONS

    by_name = {rule["alert"]: rule["expr"] for rule in alerts()}
    security = re.search(r'reason=~"([^"]+)"', by_name["KwapiBusForgeryOrReplay"]).group(1)
    other = re.search(r'reason!~"([^"]+)"', by_name["KwapiBusMessagesRejected"]).group(1)
    assert security == other
    assert set(security.split("|")) <= set(REJECT_REASONS)
    assert {"bad_signature", "replay"} <= set(security.split("|"))


def test_makefile_installs_prometheus():
    makefile = (ROOT / "Makefile").read_text()
    packages = re.search(r"^APT_PACKAGES := (.*)$", makefile, re.MULTILINE).group(1).split()
    assert "prometheus" in packages
